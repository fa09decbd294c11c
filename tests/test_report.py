"""`replayer report`: the HTML page and PNG charts built from real run folders."""

from __future__ import annotations

import base64
import html
import random
import re
from collections import Counter
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from replayer.commands.report import report
from replayer.config import Secret
from replayer.emulator import FaultConfig
from replayer.engine.control import RunControl
from replayer.engine.replay import replay
from replayer.output.layout import FAILURES, METRICS, SUMMARY, USERS
from replayer.output.users import write_users
from replayer.records import ExitCode
from replayer.report import NotAnOutputDir, ReportFiles, build_report, text_summary
from replayer.report.charts import throughput_figure
from replayer.report.load import (
    TOP_FAILING_USERS,
    Metrics,
    read_metrics,
    tally_failures,
    tally_users,
)
from replayer.report.page import badge
from replayer.workers.parent import run_workers
from tests.conftest import TEST_KEY, StartEmulator, generated, read_rows, settings_for

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NASTY_USER = "<img src=x onerror=alert(1)>"
NASTY_FIELD = "<b>bold</b>"
NASTY_LINES = 30


# ---- making real run folders ---------------------------------------------------------


def nasty_lines(path: Path) -> Path:
    """Lines that fail validation: NASTY_LINES for a user whose id is HTML (more failures than
    any generated user can have), and one line that is not JSON."""
    rows = [orjson.dumps({"userId": NASTY_USER, "time": 1_700_000_000 + i, NASTY_FIELD: 1})
            for i in range(NASTY_LINES)]
    path.write_bytes(b"\n".join([*rows, b'{"userId": "u-cut", "time": 17']) + b"\n")
    return path


async def run_into(out: Path, settings: Any, paths: list[Path], *, workers: int = 1) -> Any:
    """Replays `paths` in process (or with `workers` worker processes) into `out`, with
    users.ndjson (written here if the run did not write it)."""
    out.mkdir(parents=True)
    inputs = [str(p) for p in paths]
    if workers > 1:
        result = await run_workers(settings, inputs, out, workers, control=RunControl(),
                                   resume_command=None)
    else:
        result = await replay(settings, inputs, out, control=RunControl(),
                              rng=random.Random(7))
    if not (out / USERS).exists():
        write_users(out, inputs=inputs)
    return result


async def faulty_run(start_emulator: StartEmulator, tmp_path: Path,
                     *, fail_if: tuple[str, ...] = ()) -> Path:
    """A finished run with sending failures of several kinds and validation failures;
    `fail_if` thresholds, if any, must include one that fails."""
    emulator = await start_emulator(
        faults=FaultConfig(status_503=0.15, status_429=0.1, drop_after=0.02), seed=3)
    # 20 records a user: about 78% of users see a record fail twice (1 - 0.93**20), so the
    # 20 most-failing users are nearly always all there is to show, not most of them.
    data = generated(tmp_path / "in.ndjson", records=800, users=40)
    bad = nasty_lines(tmp_path / "bad.ndjson")
    settings = settings_for(emulator.url, max_attempts=2, concurrency=16, batch=False,
                            fail_if=fail_if)
    result = await run_into(tmp_path / "out", settings, [data, bad])
    assert result.exit_code == (ExitCode.THRESHOLD if fail_if else ExitCode.FAILURES)
    return tmp_path / "out"


async def load_test_run(start_emulator: StartEmulator, tmp_path: Path, *,
                        faults: FaultConfig | None = None, records: int = 1000,
                        **overrides: Any) -> Path:
    """A finished load-test run (one request per record) with the given settings."""
    emulator = await start_emulator(faults=faults or FaultConfig())
    data = generated(tmp_path / "in.ndjson", records=records, users=records // 2)
    settings = settings_for(emulator.url, batch=False, **overrides)
    await run_into(tmp_path / "out", settings, [data])
    return tmp_path / "out"


async def clean_run(start_emulator: StartEmulator, tmp_path: Path) -> Path:
    """A finished run where every record was delivered."""
    emulator = await start_emulator()
    data = generated(tmp_path / "in.ndjson", records=200, users=20)
    result = await run_into(tmp_path / "out", settings_for(emulator.url), [data])
    assert result.exit_code == ExitCode.OK
    return tmp_path / "out"


# ---- reading the page back -----------------------------------------------------------


class Tables(HTMLParser):
    """Every <table id=...> of a page as rows of cell texts (unescaped)."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs).get("id") or "", [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self._table[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


HEADLESS = ("summary-table", "schedule-table")  # two-column tables: label, value


def body_rows(tables: Tables, table_id: str) -> list[list[str]]:
    """The rows of a table without its header row."""
    rows = tables.tables.get(table_id, [])
    return rows[1:] if rows and table_id not in HEADLESS else rows


def by_column(tables: Tables, table_id: str) -> dict[str, dict[str, str]]:
    """A table with a header row as {first cell: {column: cell}}."""
    head, *rows = tables.tables[table_id]
    return {row[0]: dict(zip(head[1:], row[1:], strict=True)) for row in rows}


def ms_value(text: str) -> float:
    """`2,269.212 ms` as written on the page, back to a number."""
    return float(text.removesuffix(" ms").replace(",", ""))


def header_of(page: str) -> str:
    match = re.search(r"<header>.*?</header>", page, re.DOTALL)
    assert match is not None
    return match.group(0)


def n(value: Any) -> str:
    """A number as the page writes it: as stored, with thousands separators."""
    return "—" if value is None else f"{value:,}"


def strings_in(value: Any) -> Iterator[str]:
    """Every string inside a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings_in(v)


def expected_top_users(out: Path, *, top: int = TOP_FAILING_USERS) -> list[tuple[str, int]]:
    """The most-failing users, counted here independently: userId, else deviceId."""
    counts: Counter[str] = Counter()
    for row in read_rows(out / FAILURES):
        if user := row.get("userId") or row.get("deviceId"):
            counts[user] += 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]


def shown_top_users(page: str) -> list[tuple[str, int]]:
    """(user, failures) of each row of the page's most-failing users table."""
    head, *rows = Tables(page).tables["top-users"]
    user, failures = head.index("user"), head.index("failures")
    return [(row[user], int(row[failures].replace(",", ""))) for row in rows]


def assert_report_files(files: ReportFiles, page: str) -> None:
    for path in files.paths():
        assert path.is_file() and path.stat().st_size > 0, path
    for png in files.paths()[1:]:
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC), f"{png.name} is not a PNG"
        assert f"data:image/png;base64,{base64.b64encode(data).decode()}" in page, \
            f"{png.name} is not the image embedded in the page"


def assert_self_contained(page: str, out: Path) -> None:
    """No script, stylesheet link or URL but those inside text read from the files."""
    lowered = page.lower()
    for marker in ("<script", "<link", "<iframe", "<object", "<embed", "@import", "url(",
                   "href=", "src=\"http", "src='http", "//cdn"):
        assert marker not in lowered, marker
    assert all(src.startswith("data:image/png;base64,")
               for src in _attr_values(page, "src")), "only embedded images"
    data_text = set(strings_in(orjson.loads((out / SUMMARY).read_bytes())))
    for row in read_rows(out / FAILURES):
        data_text.update(strings_in(row))
    rest = page
    for text in sorted(data_text, key=len, reverse=True):
        rest = rest.replace(html.escape(text, quote=True), "")
    assert "http://" not in rest and "https://" not in rest


def _attr_values(page: str, name: str) -> list[str]:
    found: list[str] = []

    class Attrs(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.extend(v or "" for k, v in attrs if k == name)

    Attrs().feed(page)
    return found


def assert_summary_shown(page: str, summary: dict[str, Any]) -> None:
    """Each key number of summary.json is in its row of the page's tables."""
    tables = Tables(page)
    shown = {label: value for label, value in body_rows(tables, "summary-table")}
    expected = {
        "State": summary["state"], "Exit code": n(summary["exit_code"]),
        "Lines read": n(summary["lines_read"]), "Records": n(summary["records"]),
        "Delivered": n(summary["delivered"]), "Failed": n(summary["failed"]),
        "Unfinished": n(summary["unfinished"]), "Requests": n(summary["requests"]),
        "Retries": n(summary["retries"]), "Records per second": n(summary["records_per_s"]),
        "Started at": summary["started_at"], "Ended at": summary["ended_at"],
    }
    for p, value in summary["latency_ms"].items():
        expected[f"Latency {p} (delivered)"] = "—" if value is None else f"{n(value)} ms"
    assert {k: shown.get(k) for k in expected} == expected
    raw = [label for label in shown if "_" in label or label in summary]
    assert not raw, f"labels that are raw keys, not words: {raw}"
    assert shown["Elapsed"].startswith(f"{n(summary['elapsed_s'])} s")
    latency = {row[0]: row[1:] for row in body_rows(tables, "latency-table")}
    for outcome, key in (("delivered", "latency_ms"), ("failed", "failed_latency_ms")):
        assert latency[outcome] == [
            "—" if v is None else f"{n(v)} ms" for v in summary[key].values()]
    kinds = {row[0]: row[1] for row in body_rows(tables, "failure-kinds")}
    assert kinds == {k: n(v) for k, v in summary["failures_by_kind"].items()}
    settings = dict(body_rows(tables, "settings-table"))
    assert settings["client_key"] == "[redacted]"
    assert settings.keys() == summary["settings"].keys()


# ---- the tests -----------------------------------------------------------------------


async def test_report_of_a_run_with_failures(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    out = await faulty_run(start_emulator, tmp_path)
    summary = orjson.loads((out / SUMMARY).read_bytes())
    assert {"server_error", "unknown_field", "invalid_json"} <= summary["failures_by_kind"].keys()

    files = build_report(out)

    assert '<span class="state badge-warn">finished</span>' in header_of(
        files.html.read_text("utf-8")), "finished with failures (exit code 1): amber"

    assert files.html == out / "report.html"
    assert [p.name for p in files.paths()[1:]] == [
        "report-throughput.png", "report-latency.png", "report-failures.png",
        "report-retries.png"]
    page = files.html.read_text("utf-8")
    assert_report_files(files, page)
    assert_self_contained(page, out)
    assert_summary_shown(page, summary)
    top = shown_top_users(page)
    assert top == expected_top_users(out)
    assert top[0] == (NASTY_USER, NASTY_LINES)
    # What came from the files is escaped: the page has no tag made from the data.
    assert NASTY_USER not in page and html.escape(NASTY_USER) in page
    assert NASTY_FIELD not in page and html.escape(NASTY_FIELD) in page
    text = text_summary(out)
    for key in ("records", "delivered", "failed", "unfinished", "records_per_s"):
        assert n(summary[key]) in text
    for path in (*files.paths(), out / SUMMARY):
        assert TEST_KEY.encode() not in path.read_bytes()
    assert TEST_KEY not in text


async def test_report_of_a_run_without_failures(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    out = await clean_run(start_emulator, tmp_path)
    summary = orjson.loads((out / SUMMARY).read_bytes())

    files = build_report(out)

    page = files.html.read_text("utf-8")
    assert_report_files(files, page)
    assert_summary_shown(page, summary)
    assert "No failures: every record read was delivered." in page
    assert "top-users" not in page
    users = by_column(Tables(page), "users-counts")
    assert users["Users"]["users"] == "20"
    assert users["Every record delivered"] == {"users": "20", "share": "100.0%"}
    assert users["No record delivered"]["users"] == "0"
    assert "failures:" not in text_summary(out)
    assert files.schedule is None, "an unpaced run has no schedule chart"
    assert "thresholds-table" not in page and "p99 scheduled" not in page
    again = build_report(out, dest=tmp_path / "again")
    assert [p.read_bytes() for p in again.paths()] == [p.read_bytes() for p in files.paths()], \
        "the same folder gives the same report, byte for byte"


@pytest.mark.parametrize("why", ["invalid_key", "every_request_503"])
async def test_report_of_a_run_that_failed_entirely(
    start_emulator: StartEmulator, tmp_path: Path, why: str
) -> None:
    data = generated(tmp_path / "in.ndjson", records=60, users=6)
    if why == "invalid_key":
        emulator = await start_emulator()
        settings = settings_for(emulator.url, client_key=Secret("not-the-key-0000"))
    else:
        emulator = await start_emulator(faults=FaultConfig(status_503=1.0))
        settings = settings_for(emulator.url, max_attempts=1)
    result = await run_into(tmp_path / "out", settings, [data])
    out = tmp_path / "out"
    summary = orjson.loads((out / SUMMARY).read_bytes())
    assert summary["delivered"] == 0
    assert result.exit_code == (ExitCode.INVALID_KEY if why == "invalid_key" else ExitCode.FAILURES)

    files = build_report(out)

    page = files.html.read_text("utf-8")
    assert_report_files(files, page)
    assert_self_contained(page, out)
    assert_summary_shown(page, summary)
    if why == "invalid_key":
        assert summary["state"] == "aborted"
        assert html.escape(summary["stopped_because"]) in page
        assert "stopped because:" in text_summary(out)
    else:
        assert shown_top_users(page) == expected_top_users(out)


@pytest.mark.parametrize("damage", ["empty", "missing", "cut_last_line"])
async def test_report_with_damaged_or_missing_metrics(
    start_emulator: StartEmulator, tmp_path: Path, damage: str
) -> None:
    out = await clean_run(start_emulator, tmp_path)
    metrics = out / METRICS
    rows = metrics.read_bytes().splitlines()
    if damage == "empty":
        metrics.write_bytes(b"")
    elif damage == "missing":
        metrics.unlink()
    else:
        metrics.write_bytes(b"\n".join(rows) + b"\n" + rows[-1][:20])

    files = build_report(out)

    page = files.html.read_text("utf-8")
    assert_report_files(files, page)
    shown = dict(body_rows(Tables(page), "summary-table"))
    assert shown["metrics.ndjson rows"] == {
        "empty": "0", "missing": "no file", "cut_last_line": n(len(rows))}[damage]


async def test_report_of_a_multi_worker_folder(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    emulator = await start_emulator(faults=FaultConfig(status_503=0.2), seed=5)
    data = generated(tmp_path / "in.ndjson", records=300, users=30)
    settings = settings_for(emulator.url, max_attempts=1, workers=2, batch=False)
    await run_into(tmp_path / "out", settings, [data], workers=2)
    out = tmp_path / "out"
    summary = orjson.loads((out / SUMMARY).read_bytes())
    assert summary["workers"] == 2 and (out / "workers" / "1").is_dir()

    files = build_report(out)

    page = files.html.read_text("utf-8")
    assert_report_files(files, page)
    assert_summary_shown(page, summary)
    workers = body_rows(Tables(page), "workers-table")
    assert [row[3:6] for row in workers] == [
        [n(w["records"]), n(w["delivered"]), n(w["failed"])] for w in summary["per_worker"]]
    assert shown_top_users(page) == expected_top_users(out)


async def test_report_of_a_load_test_with_thresholds(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    out = await load_test_run(start_emulator, tmp_path, rate_schedule="100..300/1s",
                              duration_s=1.5, fail_if=("p99>0.001ms", "error_rate>50%"))
    summary = orjson.loads((out / SUMMARY).read_bytes())
    assert (summary["exit_code"], summary["stopped_by"]) == (ExitCode.THRESHOLD, "duration")
    metrics = read_rows(out / METRICS)

    files = build_report(out)

    assert files.schedule == out / "report-schedule.png"
    assert [p.name for p in files.paths()[1:]] == [
        "report-throughput.png", "report-schedule.png", "report-latency.png",
        "report-failures.png", "report-retries.png"]
    page = files.html.read_text("utf-8")
    assert_report_files(files, page)  # the schedule chart too: a PNG, embedded in the page
    assert_self_contained(page, out)
    assert_summary_shown(page, summary)
    tables = Tables(page)
    assert dict(body_rows(tables, "summary-table"))["Stopped by"] == "duration"
    # Planned and sent as metrics.ndjson counts them, second by second.
    schedule = dict(body_rows(tables, "schedule-table"))
    planned = round(sum(r["planned"] for r in metrics))  # a count of requests: whole
    sent = sum(r["requests"] for r in metrics)
    assert schedule["Requests planned"] == n(planned) and "." not in schedule["Requests planned"]
    assert schedule["Requests sent"] == n(sent) == n(summary["requests"])
    assert schedule["Plan"] == "--rate 100..300/1s --duration 1.5s"
    worst = max(r["scheduled_latency_ms"]["p99"] or 0 for r in metrics)
    assert schedule["Worst p99 of a second, scheduled"].startswith(f"{n(worst)} ms")
    # Both latency views and the lateness, as summary.json has them.
    views = by_column(tables, "request-latency-table")
    for row, doc in (("service", summary["request_latency_ms"]["service"]),
                     ("scheduled", summary["request_latency_ms"]["scheduled"]),
                     ("behind schedule", summary["behind_schedule_ms"])):
        assert views[row] == {p: f"{n(v)} ms" for p, v in doc.items()}, row
    # One row per threshold, with its verdict; the headline says a threshold failed.
    verdicts = summary["thresholds"]
    assert [v["failed"] for v in verdicts] == [True, False]
    assert body_rows(tables, "thresholds-table") == [
        [v["threshold"], n(v["value"]), "FAIL" if v["failed"] else "pass", v["text"]]
        for v in verdicts]
    assert "thresholds failed" in header_of(page)
    assert "<title>Replay report: out (thresholds failed)</title>" in page
    assert html.escape(f"Threshold failed: {verdicts[0]['text']}") in page
    lines = text_summary(out).splitlines()
    assert lines[0].endswith("exit code 6, thresholds failed")
    for v in verdicts:
        assert f"threshold {v['threshold']}: {v['text']}" in lines
    views_p99 = {v: summary["request_latency_ms"][v]["p99"] for v in ("service", "scheduled")}
    assert (f"request p99: service {n(views_p99['service'])} ms, "
            f"scheduled {n(views_p99['scheduled'])} ms") in lines
    assert "stopped by: duration" in lines


async def test_a_ceiling_backfills_report_shows_service_latency_and_no_schedule(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    # A plain --rate backfill slower than its ceiling (a stall): nothing was planned, so no
    # schedule chart, no scheduled tile and no time behind schedule; service latency only.
    out = await load_test_run(start_emulator, tmp_path, records=400,
                              faults=FaultConfig(stall_after_s=0.3, stall_for_s=1.2),
                              rate_per_s=200.0, concurrency=4)
    summary = orjson.loads((out / SUMMARY).read_bytes())
    assert summary["exit_code"] == 0

    files = build_report(out)

    page = files.html.read_text("utf-8")
    assert files.schedule is None and "schedule-table" not in page
    assert "p99 scheduled" not in page and "behind schedule" not in page
    views = by_column(Tables(page), "request-latency-table")
    assert list(views) == ["service"]
    assert views["service"]["p99"] == f"{n(summary['request_latency_ms']['service']['p99'])} ms"
    assert 'class="state badge-ok"' in header_of(page), "exit code 0: green"
    lines = text_summary(out).splitlines()
    assert f"request p99: service {n(summary['request_latency_ms']['service']['p99'])} ms" \
        in lines


@pytest.mark.parametrize(
    ("state", "code", "colour"),
    [("finished", 0, "ok"), ("finished", 1, "warn"), ("finished", 6, "warn"),
     ("interrupted", 130, "warn"), ("aborted", 3, "bad"), ("aborted", 5, "bad"),
     ("finished", None, "warn")],
    ids=["clean", "failures", "threshold", "signal", "invalid-key", "worker", "no-code"],
)
def test_the_badge_follows_the_exit_code(state: str, code: int | None, colour: str) -> None:
    assert badge({"state": state, "exit_code": code}) == colour


def test_each_throughput_series_fills_its_own_axis() -> None:
    # A batched run: a few requests a second carry a thousand records.
    m = Metrics(edges_s=[float(i) for i in range(11)], requests=[2] * 10,
                delivered=[1000] * 10, failed=[0] * 9 + [40], retries=[0] * 10,
                retry_waiting=[0] * 10, outage=[False] * 10)

    fig = throughput_figure(m)

    for ax in fig.axes:
        [series] = [p for p in ax.patches if p.get_label() and not p.get_label().startswith("_")]
        peak = max(series.get_data().values)
        assert peak >= ax.get_ylim()[1] / 2, (series.get_label(), peak, ax.get_ylim())


async def test_a_stalled_servers_report_shows_scheduled_p99_far_above_service_p99(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    out = await load_test_run(start_emulator, tmp_path, records=2000,
                              faults=FaultConfig(stall_after_s=0.4, stall_for_s=0.8),
                              rate_per_s=400.0, concurrency=2, duration_s=2.0)
    summary = orjson.loads((out / SUMMARY).read_bytes())

    files = build_report(out)

    page = files.html.read_text("utf-8")
    assert files.schedule is not None and files.schedule.is_file()
    views = by_column(Tables(page), "request-latency-table")
    service, scheduled = ms_value(views["service"]["p99"]), ms_value(views["scheduled"]["p99"])
    assert service == summary["request_latency_ms"]["service"]["p99"]
    assert scheduled == summary["request_latency_ms"]["scheduled"]["p99"]
    # Requests planned during the 0.8 s stall went out late; once sent, most were quick.
    assert scheduled > 400.0
    assert scheduled > 10 * service, (scheduled, service)
    behind = ms_value(views["behind schedule"]["max"])
    assert behind == summary["behind_schedule_ms"]["max"] > 400.0
    assert "thresholds-table" not in page and "thresholds failed" not in page


async def test_report_of_a_run_at_the_recorded_pace(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    emulator = await start_emulator()
    data = tmp_path / "in.ndjson"
    data.write_bytes(b"".join(orjson.dumps({"userId": f"u{i}", "time": 1_700_000_000 + i / 40})
                              + b"\n" for i in range(60)))
    settings = settings_for(emulator.url, batch=False, pace="original", speed=2.0)
    await run_into(tmp_path / "out", settings, [data])
    out = tmp_path / "out"
    metrics = read_rows(out / METRICS)
    assert all(r["planned"] is None for r in metrics), "no planned count at the recorded pace"

    files = build_report(out)

    page = files.html.read_text("utf-8")
    assert files.schedule is not None and files.schedule.is_file()
    assert_report_files(files, page)
    schedule = dict(body_rows(Tables(page), "schedule-table"))
    assert schedule["Plan"] == "--pace original --speed 2.0"
    assert schedule["Requests planned"] == "each record at its recorded time"
    assert schedule["Requests sent"] == n(sum(r["requests"] for r in metrics)) == "60"


async def test_a_folder_from_before_load_tests_gets_no_load_test_parts(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    """A paced run's folder with the load-test keys taken out, as older runs wrote it."""
    out = await load_test_run(start_emulator, tmp_path, records=200, rate_per_s=400.0,
                              fail_if=("p99>0.001ms",))
    doc = orjson.loads((out / SUMMARY).read_bytes())
    for key in ("request_latency_ms", "behind_schedule_ms", "thresholds", "stopped_by"):
        doc.pop(key, None)
    for view in ("service", "scheduled"):
        del doc["latency_histogram_ms"][view]
    (out / SUMMARY).write_bytes(orjson.dumps(doc))
    rows = read_rows(out / METRICS)
    (out / METRICS).write_bytes(b"".join(
        orjson.dumps({k: v for k, v in r.items() if k not in ("planned", "scheduled_latency_ms")})
        + b"\n" for r in rows))

    files = build_report(out)

    page = files.html.read_text("utf-8")
    assert files.schedule is None and not (out / "report-schedule.png").exists()
    assert len(files.paths()) == 5
    assert_report_files(files, page)
    for part in ("schedule-table", "request-latency-table", "thresholds-table",
                 "thresholds failed", "Stopped by", "p99 scheduled"):
        assert part not in page, part
    text = text_summary(out)
    assert "request p99" not in text and "threshold" not in text


async def test_command_prints_the_summary_and_the_files(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    out = await faulty_run(start_emulator, tmp_path)
    target = tmp_path / "elsewhere" / "backfill.html"

    result = CliRunner().invoke(report, [str(out), "--out", str(target)])

    assert result.exit_code == 0, result.output
    assert result.output.startswith(text_summary(out))
    written = [line.strip() for line in result.output.splitlines()[-5:]]
    assert written == [str(target), *(str(target.parent / f"backfill-{c}.png") for c in
                                      ("throughput", "latency", "failures", "retries"))]
    assert all(Path(p).is_file() for p in written)
    assert not (out / "report.html").exists()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("absent", "is not a folder"),
        ("empty", "is not a replayer output folder"),
        ("running", "has no summary.json yet"),
        ("corrupt", "is not valid JSON"),
        ("not_summary", "is not a replayer summary"),
    ],
    ids=["absent", "empty", "running", "corrupt", "not_summary"],
)
def test_command_refuses_other_folders(tmp_path: Path, setup: str, message: str) -> None:
    folder = tmp_path / "dir"
    if setup != "absent":
        folder.mkdir()
    if setup == "running":
        (folder / "run.json").write_text('{"state": "running"}')
    elif setup == "corrupt":
        (folder / SUMMARY).write_text('{"state": "fin')
    elif setup == "not_summary":
        (folder / SUMMARY).write_text('["state"]')

    result = CliRunner().invoke(report, [str(folder)])

    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    with pytest.raises(NotAnOutputDir):
        build_report(folder)


def test_command_wants_an_html_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(report, [str(tmp_path), "--out", str(tmp_path / "r.png")])
    assert result.exit_code == 2
    assert "*.html" in result.output


# ---- reading the files ---------------------------------------------------------------


def test_metrics_of_a_resumed_run_continue_its_time_axis(tmp_path: Path) -> None:
    rows = [{"elapsed_s": e, "requests": r, "failed_by_kind": k, "outage": o}
            for e, r, k, o in [(1.0, 5, {}, False), (2.0, 6, {"timeout": 2}, True),
                               (3.0, 7, {}, False), (1.0, 8, {"timeout": 1}, False),
                               (2.0, 9, {}, False)]]
    path = tmp_path / METRICS
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows) + b"{\"cut")

    m = read_metrics(path)

    assert m.edges_s == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert m.resumed_at_s == [3.0]
    assert m.requests == [5, 6, 7, 8, 9]
    assert m.kind_series("timeout") == [0, 2, 0, 1, 0]
    assert m.outage == [False, True, False, False, False]
    assert m.unreadable_rows == 1


def test_a_long_run_is_drawn_in_grouped_steps() -> None:
    from replayer.report.chart_kit import MAX_STEPS, Timeline
    from replayer.report.load import Metrics

    rows = 2 * MAX_STEPS + 1  # 3 rows per step, the last step a single row
    m = Metrics(edges_s=[float(i) for i in range(rows + 1)], requests=list(range(rows)),
                outage=[False] * rows)

    line = Timeline.of(m)

    assert (line.per_step, line.unit) == (3, "min")
    assert len(line.edges) == len(line.mean(m.requests)) + 1 == rows // 3 + 2
    assert line.mean(m.requests)[:2] == [1.0, 4.0] and line.mean(m.requests)[-1] == rows - 1
    assert line.peak(m.requests)[:2] == [2, 5]
    assert line.edges[-1] == rows / 60


def test_failure_tally_counts_users_kinds_and_ties(tmp_path: Path) -> None:
    rows = [("b", None, "timeout"), ("a", None, "timeout"), (None, "dev-1", "rejected"),
            ("b", "dev-9", "rejected"), ("a", None, "rejected"), (None, None, "invalid_json"),
            ("c", None, "timeout")]
    path = tmp_path / FAILURES
    path.write_bytes(b"".join(
        orjson.dumps({"userId": u, "deviceId": d, "kind": k, "message": f"{k} says"}) + b"\n"
        for u, d, k in rows) + b"not json\n")

    tally = tally_failures(path, top=3)

    assert [(u.user, u.by_device_id, u.failures, u.kinds) for u in tally.top_users] == [
        ("a", False, 2, (("rejected", 1), ("timeout", 1))),
        ("b", False, 2, (("rejected", 1), ("timeout", 1))),
        ("c", False, 1, (("timeout", 1),)),
    ]
    assert (tally.rows, tally.users, tally.without_user, tally.unreadable_rows) == (7, 4, 1, 1)
    assert tally.by_kind == {"timeout": 3, "rejected": 3, "invalid_json": 1}
    assert tally.examples["rejected"] == "rejected says"


def expected_user_counts(out: Path) -> dict[str, int]:
    """Users by how much of theirs was delivered, counted here from the row files."""
    delivered: Counter[str] = Counter()
    records: Counter[str] = Counter()
    for name, ok in (("results.ndjson", True), (FAILURES, False)):
        for row in read_rows(out / name):
            if user := row.get("userId") or row.get("deviceId"):
                records[user] += 1
                delivered[user] += ok
    return {"Users": len(records),
            "Every record delivered": sum(delivered[u] == n for u, n in records.items()),
            "Some records delivered": sum(0 < delivered[u] < n for u, n in records.items()),
            "No record delivered": sum(delivered[u] == 0 for u in records)}


async def test_the_users_section_shows_users_ndjson(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    out = await faulty_run(start_emulator, tmp_path)
    assert (out / USERS).is_file()

    page = build_report(out).html.read_text("utf-8")

    tables = Tables(page)
    counts = by_column(tables, "users-counts")
    expected = expected_user_counts(out)
    assert {label: row["users"] for label, row in counts.items()} == {
        label: n(v) for label, v in expected.items()}
    assert expected["Some records delivered"] > 0 and expected["No record delivered"] > 0
    assert shown_top_users(page) == expected_top_users(out, top=TOP_FAILING_USERS)
    assert len(shown_top_users(page)) == TOP_FAILING_USERS, "more users failed than shown"
    head, first, *_ = tables.tables["top-users"]
    assert dict(zip(head, first, strict=True)) == {
        "#": "1", "user": NASTY_USER, "id": "userId", "records": n(NASTY_LINES),
        "delivered": "0", "failures": n(NASTY_LINES), "kinds": f"unknown_field {NASTY_LINES}"}
    assert "1 failures name no user" in page  # the line cut short: it names no user
    assert "users.ndjson" in dict(body_rows(tables, "files-table"))


async def test_a_folder_without_users_ndjson_ranks_users_from_failures(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    """A folder from before users.ndjson: failures.ndjson's own ranking, as before."""
    out = await faulty_run(start_emulator, tmp_path)
    (out / USERS).unlink()

    page = build_report(out).html.read_text("utf-8")

    assert '<h2 id="users">Most-failing users</h2>' in page
    assert "users-counts" not in page
    assert shown_top_users(page) == expected_top_users(out, top=10)


def test_users_tally_counts_and_ranks_with_ties(tmp_path: Path) -> None:
    def row(uid: str | None, did: str | None, records: int, delivered: int,
            failed: dict[str, int]) -> bytes:
        return orjson.dumps({
            "userId": uid, "deviceId": did, "device_ids": 1, "records": records,
            "delivered": delivered, "failed": failed, "first": {"file": "a", "line": 1},
            "last": {"file": "a", "line": 2}, "last_response": None}) + b"\n"

    path = tmp_path / USERS
    path.write_bytes(b"".join([
        row("b", None, 3, 1, {"timeout": 2}), row("a", None, 2, 0, {"timeout": 1,
                                                                    "rejected": 1}),
        row(None, "dev-1", 4, 1, {"blocked": 3}), row("ok", None, 5, 5, {}),
        row("c", None, 2, 1, {"timeout": 1}),
    ]) + b"not json\n{}\n")

    tally = tally_users(path, top=3)

    assert [(u.key, u.failures) for u in tally.top] == [("dev-1", 3), ("a", 2), ("b", 2)]
    assert (tally.users, tally.fully_delivered, tally.partly_delivered, tally.none_delivered,
            tally.with_failures, tally.unreadable_rows) == (5, 1, 3, 1, 4, 2)


def test_secret_settings_are_never_shown(tmp_path: Path) -> None:
    """Even a summary.json that held the key in clear (it never should) does not leak it."""
    doc = {"state": "finished", "exit_code": 0, "delivered": 0, "latency_ms": {},
           "settings": {"client_key": TEST_KEY, "api_token": TEST_KEY,
                        "client_key_file": "/etc/key"}}
    (tmp_path / SUMMARY).write_bytes(orjson.dumps(doc))

    files = build_report(tmp_path)

    page = files.html.read_text("utf-8")
    assert TEST_KEY not in page
    settings = dict(body_rows(Tables(page), "settings-table"))
    assert settings == {"client_key": "[redacted]", "api_token": "[redacted]",
                        "client_key_file": "/etc/key"}


@pytest.mark.parametrize(
    ("value", "shown"),
    [(20145, "20,145"), (207.6, "207.6"), (1048576.5, "1,048,576.5"), (None, "—"),
     (True, "yes"), ("finished", "finished")],
    ids=["int", "float", "big_float", "none", "bool", "text"],
)
def test_numbers_keep_the_files_precision(value: Any, shown: str) -> None:
    from replayer.report.display import number

    assert number(value) == shown

