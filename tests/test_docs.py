"""Docs are tested: every setting and every request and response field is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contextd.models import AssembleRequest, AssembleResponse, Dropped, Usage, UsedDocument
from contextd.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_every_setting_is_documented(name: str) -> None:
    assert re.search(rf"\| `{name}` \| `CONTEXTD_{name.upper()}` \|", REFERENCE), name
    assert Settings.model_fields[name].description


@pytest.mark.parametrize(
    ("model", "name"),
    [(m, n) for m in (AssembleRequest, AssembleResponse, Usage, UsedDocument, Dropped)
     for n in m.model_fields],
)
def test_every_request_and_response_field_is_documented(model, name: str) -> None:
    description = model.model_fields[name].description
    assert description, f"{model.__name__}.{name} has no description"
    assert f"| `{name}` | {description} |" in REFERENCE


def test_readme_quick_start_is_the_two_commands() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^make \w+$", quick_start, flags=re.M)
    assert commands == ["make run", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
