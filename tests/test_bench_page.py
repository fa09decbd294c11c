"""bench/run.py rewrites its part of docs/benchmarks.md and keeps the sections after it."""

from __future__ import annotations

import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import run as bench


def test_a_rerun_keeps_the_sections_measured_by_other_scripts() -> None:
    page = (REPO / "docs" / "benchmarks.md").read_text()
    assert page.count(bench.GENERATED_END) == 1
    measured = page.split(bench.GENERATED_END)[1]
    assert "## Adaptive rate" in measured and "users.ndjson without the cliff" in measured

    again = bench.with_measured("# Benchmarks\n\nnew figures\n", page)

    assert again.startswith("# Benchmarks\n\nnew figures\n\n" + bench.GENERATED_END + "\n")
    assert again.endswith(measured)
    assert bench.with_measured("# Benchmarks\n", again) == bench.with_measured(
        "# Benchmarks\n", page), "the same page whichever rerun wrote it"


def test_a_first_page_ends_with_the_line() -> None:
    assert bench.with_measured("# B\n\nx\n", "") == "# B\n\nx\n\n" + bench.GENERATED_END + "\n"
    # a page from before the line existed: nothing after the generated part is known
    assert bench.with_measured("# B\n", "# old\n\nhand text\n") == "# B\n\n" + (
        bench.GENERATED_END + "\n")
