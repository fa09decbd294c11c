"""bench/instructions.py: its arithmetic, and (where valgrind is installed) a whole run."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import instructions


def test_per_record_is_the_difference_over_the_extra_records() -> None:
    assert instructions.per_record(1_000_000, 3_000_000, 100, 300) == 10_000.0
    with pytest.raises(ValueError):
        instructions.per_record(1, 2, 300, 300)


def test_the_total_is_read_from_callgrinds_summary() -> None:
    stderr = "==1== Events    : Ir\n==1== Collected : 123456789\n==1==\n==1== I   refs:      123"
    assert instructions.collected(stderr) == 123_456_789
    with pytest.raises(ValueError):
        instructions.collected("==1== nothing here")


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_a_run_counts_each_variant() -> None:
    done = subprocess.run([sys.executable, str(REPO / "bench" / "instructions.py"),
                           "--records", "200", "400", "--only", "floor,single"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    rows = dict(re.findall(r"^\| (\w+) \| ([0-9,]+) \|$", done.stdout, flags=re.MULTILINE))
    assert set(rows) == {"floor", "single"}, done.stdout
    # replayer's pipeline does more per record than a bare post() loop
    assert int(rows["single"].replace(",", "")) > int(rows["floor"].replace(",", "")) > 0
