"""Worker processes change nothing: the same lines give the same records, rejects and summary
whether this process or a pool of workers maps and writes them; tallies merged batch by
batch equal the tally of one pass."""

from __future__ import annotations

import io
import os
import random
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from replayer.commands import convert as convert_command
from replayer.records import ExitCode
from replayer.source.convert import pipeline
from replayer.source.convert.clock import LagTally
from replayer.source.convert.events import FieldTally
from replayer.source.convert.pipeline import ConvertOptions, convert
from replayer.source.convert.readers import ExportLine
from replayer.source.convert.sources import builtin_mapping
from replayer.source.convert.work import Job, Line, WorkerDied, Workers
from tests.test_convert_sessions import BUILD, GAP, T

SOURCES = sorted(BUILD)
_INSERT_ID = {
    "amplitude": lambda row, id_: row.update(insert_id=id_),
    "mixpanel": lambda row, id_: row["properties"].update({"$insert_id": id_}),
    "segment": lambda row, id_: row.update(messageId=id_),
    "ga4": lambda row, id_: row.update(event_bundle_sequence_id=id_),
}


def _lines(source: str, *, count: int) -> list[ExportLine]:
    """Events of 30 users over a day with a few bad lines, copies and odd attributes,
    shuffled, in two files."""
    rng = random.Random(3)
    build = BUILD[source]
    rows: list[bytes] = []
    for i in range(count):
        user = f"u{rng.randrange(30)}"
        t = T + i * 41 + rng.random()
        extra: dict[str, Any] = {}
        if source == "segment":
            extra = {"locale": rng.choice(["en-US", "xx-nowhere"]),
                     "location": {"country": rng.choice(["Germany", f"Atlantis{i % 9}"])}}
        row = (build(user, t, int(t // (3 * GAP)), **extra)
               if source in ("amplitude", "ga4") else build(user, t, **extra))
        if source == "segment":
            row["traits"] = {f"odd name {i % 7}": i, "plan": rng.choice(["a", "b"])}
        if source == "mixpanel":
            row["properties"]["mp_processing_time_ms"] = int((t + 7 * 3600) * 1000)
        _INSERT_ID[source](row, f"i{i}")
        rows.append(orjson.dumps(row))
        if i % 50 == 0:
            rows.append(rows[-1])  # a copy: the same line again
        if i % 97 == 0:
            rows.append(b'{"not json')
    rng.shuffle(rows)
    half = len(rows) // 2
    return ([ExportLine("a.json", no, data) for no, data in enumerate(rows[:half], 1)]
            + [ExportLine("b.json", no, data) for no, data in enumerate(rows[half:], 1)])


def _convert(source: str, lines: list[ExportLine], *, workers: int) -> tuple[bytes, bytes,
                                                                               bytes]:
    out, rejects = io.BytesIO(), io.BytesIO()
    summary = convert(builtin_mapping(source), lines, out=out, rejects=rejects,
                      options=ConvertOptions(now_s=T + 365 * 86400, gap_s=GAP,
                                             workers=workers))
    return out.getvalue(), rejects.getvalue(), orjson.dumps(summary.encode())


@pytest.mark.parametrize("source", SOURCES)
def test_workers_give_the_bytes_of_one_process(source: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _lines(source, count=1500)
    alone = _convert(source, lines, workers=1)
    monkeypatch.setattr(pipeline, "_BATCH_LINES", 97)  # many small batches,
    monkeypatch.setattr(pipeline, "_BATCHES_HERE", 2)  # most of them in the workers
    monkeypatch.setattr(pipeline, "_SESSION_ROWS", 13)
    pooled = _convert(source, lines, workers=2)
    assert pooled == alone
    records, refused, summary = pooled
    assert len(records.splitlines()) > 50 and refused.count(b"invalid_json") >= 15
    assert orjson.loads(summary)["duplicates"] >= 30


def test_field_tallies_merged_in_order_equal_one_tally() -> None:
    misses = [("country", f"X{i % 11}") for i in range(40)] + [("locale", "zz")] * 3
    one, parts = FieldTally(), [FieldTally() for _ in range(4)]
    for i, (target, value) in enumerate(misses):
        for tally in (one, parts[i * len(parts) // len(misses)]):
            tally.miss(target, value)
            tally.drop(f"clientKey{i % 3}")
            tally.renamed.setdefault(f"n{i % 5}", f"v{i}")
    merged = FieldTally()
    for part in parts:
        merged.merge(part)
    assert merged == one


def test_lag_tallies_merged_in_order_equal_one_tally() -> None:
    pairs = [(T + i * 60.0, T + i * 60.0 + 3600 * (7 + i % 2) + i % 13) for i in range(50)]
    one, parts = LagTally(), [LagTally() for _ in range(3)]
    for i, pair in enumerate(pairs):
        one.add(*pair)
        parts[i * len(parts) // len(pairs)].add(*pair)
    merged = LagTally()
    for part in parts:
        merged.merge(part)
    assert merged == one


def test_a_worker_that_dies_is_one_error_not_a_pool_traceback(tmp_path: Path) -> None:
    job = Job(builtin_mapping("mixpanel"), str(tmp_path), T + 365 * 86400, 1 << 20)
    line = orjson.dumps(BUILD["mixpanel"]("u1", T))

    with Workers(job, count=2) as workers:
        def batches() -> Iterator[list[Line]]:
            for i in range(50):
                if i == 5:  # the pool is running: one of its processes is killed
                    os.kill(next(iter(workers._pool._processes)), signal.SIGKILL)
                yield [(0, i, line)]

        with pytest.raises(WorkerDied, match="a worker process died"):
            for _batch, _mapped in workers.map_lines(batches()):
                pass


def test_the_cli_says_a_dead_worker_in_one_line_and_exits_5(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def dies(*_args: Any, **_kwargs: Any) -> Any:
        raise WorkerDied("a worker process died (killed, or out of memory): nothing was "
                         "written; run the conversion again")

    monkeypatch.setattr(convert_command, "run_conversion", dies)
    export = tmp_path / "export.json"
    export.write_bytes(orjson.dumps(BUILD["mixpanel"]("u1", T)) + b"\n")
    result = CliRunner().invoke(convert_command.convert,
                                ["--from", "mixpanel", str(export), "-o", str(tmp_path / "o")])
    assert result.exit_code == ExitCode.WORKER == 5
    assert result.output.strip().splitlines() == [
        ("Error: a worker process died (killed, or out of memory): nothing was written; "
         "run the conversion again")]
    assert not (tmp_path / "o").exists()
