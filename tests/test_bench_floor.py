"""bench/request_floor.py runs end to end: every mode sends every line and is timed."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO


def test_the_request_floor_measures_each_mode() -> None:
    done = subprocess.run([sys.executable, str(REPO / "bench" / "request_floor.py"),
                           "--records", "300", "--reps", "1"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    rows = re.findall(r"^\| (workers|tasks|bare) \| ([0-9.]+) \| ([0-9.]+) \|$", done.stdout,
                      flags=re.MULTILINE)
    assert [mode for mode, _, _ in rows] == ["workers", "tasks", "bare"], done.stdout
    assert all(float(median) > 0 for _, _, median in rows)
