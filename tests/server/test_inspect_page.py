"""The /inspect page end to end: a real server on loopback, the page in headless Chromium
(Debian's binary, driven by Playwright; no browser is downloaded), the form filled in and
submitted, and what it shows checked against the same assemble call made by `Client`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_live_server import free_port, wait_ready

from contextd import Client

pytestmark = pytest.mark.server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
API_KEY = "inspect-key"
SCREENSHOT = Path(__file__).resolve().parents[2] / "benchmarks" / "out" / "inspect.png"
SECTIONS = ["system", "summary", "history", "recalled", "documents", "query", "overhead"]


def _browser_or_skip() -> None:
    # Under CI the browser must be there (.ci/run installs it): a missing one fails the run.
    if os.path.exists(CHROMIUM):
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"chromium not found at {CHROMIUM}; .ci/run installs Debian's chromium")
    pytest.skip("chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A keyed server with the sample docs and one conversation."""
    data = tmp_path_factory.mktemp("inspect-data")
    port = free_port()
    env = {**os.environ, "CONTEXTD_EMBEDDER": "hash", "CONTEXTD_API_KEY": API_KEY}
    process = subprocess.Popen(
        [sys.executable, "-m", "contextd.cli", "serve", "--port", str(port), "--data-dir",
         str(data), "--sample"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        with Client(url, api_key=API_KEY) as client:
            client.append_messages("support-1", [
                {"role": "user", "content": "I am building a support bot over our docs."},
                {"role": "assistant", "content": "Then retrieval quality matters most."},
                {"role": "user", "content": "How do you keep the prompt inside the budget?"},
                {"role": "assistant", "content": "Sections are packed in priority order."}])
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_inspect_page_shows_the_assembled_prompt(server: str, tmp_path: Path) -> None:
    _browser_or_skip()
    from playwright.sync_api import expect, sync_playwright

    query, budget, system = "How are retrieved chunks ranked and fused?", 420, "Answer briefly."
    with Client(server, api_key=API_KEY) as client:
        expected = client.assemble(query=query, max_tokens=budget, session_id="support-1",
                                   system=system)
    usage = expected.usage
    assert expected.documents and expected.dropped and usage.history and usage.system

    requested: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requested.append(r.url))
            page.goto(server + "/inspect")
            # Without the key the namespace list is refused, and the page says what to do.
            expect(page.locator("#error")).to_contain_text("API key")

            page.fill("#apikey", API_KEY)
            page.dispatch_event("#apikey", "change")
            expect(page.locator("#namespace option[value=default]")).to_have_count(1)
            expect(page.locator("#session option[value=support-1]")).to_have_count(1)
            # The key is kept for the tab: a reload needs no typing.
            page.reload()
            expect(page.locator("#apikey")).to_have_value(API_KEY)
            expect(page.locator("#session option[value=support-1]")).to_have_count(1)

            page.select_option("#namespace", "default")
            page.select_option("#session", "support-1")
            page.fill("#query", query)
            page.fill("#budget", str(budget))
            page.fill("#system", system)
            page.click("#submit")
            expect(page.locator("#results")).to_be_visible()
            expect(page.locator("#status")).to_contain_text("assembled")

            _check_bar(page, expected.usage.model_dump())
            _check_messages(page, [m.content or "" for m in expected.messages],
                            [m.role for m in expected.messages])
            rows = page.locator("#documents tbody tr")
            expect(rows).to_have_count(len(expected.documents))
            for row, document in zip(rows.all(), expected.documents, strict=True):
                cells = row.locator("td").all_inner_texts()
                assert cells[1] == f"{document.id}#{document.chunk}"
                assert cells[3] == f"{document.score:.3f}"
                assert cells[4] == _rank(document.dense_rank)
                assert cells[5] == _rank(document.lexical_rank)
                assert cells[6] == str(document.tokens)
            dropped = page.locator("#dropped tbody tr")
            expect(dropped).to_have_count(len(expected.dropped))
            for row, item in zip(dropped.all(), expected.dropped, strict=True):
                cells = row.locator("td").all_inner_texts()
                assert cells == [item.kind, item.id, item.reason.replace("_", " "),
                                 str(item.tokens)]

            page.screenshot(path=str(tmp_path / "inspect.png"), full_page=True)
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tmp_path / "inspect.png", SCREENSHOT)
        finally:
            browser.close()
    assert (tmp_path / "inspect.png").stat().st_size > 10_000
    # Everything the page loaded or called came from the server itself.
    assert requested and all(url.startswith(server + "/") for url in requested), requested


def _rank(rank: int | None) -> str:
    return "–" if rank is None else str(rank)


def _check_bar(page: object, usage: dict[str, int]) -> None:
    bar = page.locator("#bar")  # type: ignore[attr-defined]
    width = bar.bounding_box()["width"]
    scale = max(usage["budget"], usage["total"])
    for section in SECTIONS:
        segment = bar.locator(f"[data-section={section}]")
        assert segment.get_attribute("data-tokens") == str(usage[section]), section
        drawn = segment.bounding_box()["width"]
        assert abs(drawn - width * usage[section] / scale) <= 2, section
        legend = page.locator(f"#legend [data-section={section}]")  # type: ignore
        assert legend.inner_text().split()[-1] == str(usage[section])
    totals = page.locator("#totals")  # type: ignore[attr-defined]
    assert totals.get_attribute("data-total") == str(usage["total"])
    assert totals.get_attribute("data-budget") == str(usage["budget"])
    assert f"{usage['total']} of {usage['budget']} tokens" in totals.inner_text()


def _check_messages(page: object, contents: list[str], roles: list[str]) -> None:
    cards = page.locator("#messages .message")  # type: ignore[attr-defined]
    assert cards.count() == len(contents)
    for card, content, role in zip(cards.all(), contents, roles, strict=True):
        assert card.locator(".role").inner_text().lower().startswith(role)
        assert card.locator("pre").inner_text() == content


def test_inspect_is_served_without_a_key_and_allows_no_other_origin(server: str) -> None:
    response = httpx.get(server + "/inspect")
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "http://" not in response.text and "https://" not in response.text
    assert httpx.get(server + "/v1/namespaces").status_code == 401
