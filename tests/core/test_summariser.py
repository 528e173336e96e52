"""The extractive summariser's cost: each line scored and tokenised at most once, and the
exact-fit trim recounting the summary a few times, not once per line."""

from __future__ import annotations

from collections.abc import Sequence

from contextd.memory.summariser import ExtractiveSummariser, select_lines, sentence_score
from contextd.tokens import get_counter

FACTS = ("Maria said on Monday that the Lisbon office opens in June. We agreed to move the "
         "launch there. The budget is 12,500 euros. ok. I prefer the venue near the river. ")


class TallyingCounter:
    """The real counter, tallying its calls and the characters it tokenised."""

    def __init__(self, join_penalty: int = 0) -> None:
        self.inner = get_counter()
        self.encoding_name = self.inner.encoding_name
        self.calls = 0
        self.chars = 0
        self.join_penalty = join_penalty

    def encode(self, text: str) -> list[int]:
        self.calls += 1
        self.chars += len(text)
        return self.inner.encode(text)

    def count(self, text: str) -> int:
        # A joined text may cost more than its lines counted alone; the penalty makes that
        # happen at every join so the trim has work to do.
        return len(self.encode(text)) + self.join_penalty * text.count("\n- ")

    def decode(self, tokens: Sequence[int]) -> str:
        return self.inner.decode(tokens)


def test_extractive_summary_of_long_history_counts_each_line_once() -> None:
    turns = [f"Speaker {i % 2}: " + FACTS * 20 for i in range(300)]
    lines = 300 * 20 * 5  # five sentences in FACTS
    counter = TallyingCounter()
    summary = ExtractiveSummariser().summarise(None, turns, 300, counter)
    assert summary and get_counter().count(summary) <= 300
    # Each line at most once (with its "- " and line break), plus a recount of the summary.
    assert counter.calls <= lines + 1
    assert counter.chars <= sum(len(turn) for turn in turns) + 3 * lines + len(summary)


def test_exact_fit_trim_recounts_a_few_times_not_once_per_line() -> None:
    lines = [f"Alice moved to Porto on {day} May {year} and will work there."
             for year in range(2000, 2010) for day in range(1, 29)]
    budget = 3_000
    counter = TallyingCounter(join_penalty=2)
    text = select_lines(lines, budget, counter)
    kept = text.splitlines()
    assert 100 < len(kept) < len(lines)
    assert counter.count(text) <= budget
    # Lines cost 17 tokens and joins 2 more: about 20 lines too many after the greedy pass,
    # found with a handful of recounts of the joined text (not one per dropped line).
    reference = TallyingCounter(join_penalty=2)
    chosen, used = [], 0
    for i in sorted(range(len(lines)), key=lambda i: (-sentence_score(lines[i]), -i)):
        cost = reference.count("- " + lines[i] + "\n")
        if used + cost <= budget:
            chosen.append(i)
            used += cost
    assert counter.calls <= len(chosen) + 1 + 9

    # The same lines as dropping the weakest one at a time until the text fits.
    while True:
        joined = "\n".join("- " + lines[i] for i in sorted(chosen))
        if reference.count(joined) <= budget:
            break
        chosen.remove(max(chosen, key=lambda i: (-sentence_score(lines[i]), i)))
    assert text == joined
