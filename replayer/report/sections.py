"""The tables of report.html below the charts: summary, latency, schedule, failures,
users, workers, settings and files. Pure; every value shown is HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from replayer.report import display
from replayer.report.load import Metrics, RunData, UsersTally
from replayer.report.markup import esc, failed_thresholds, mapping, num, table, thresholds

# Rows of the summary table: key in summary.json, label, how to show it.
_SUMMARY_ROWS = (
    ("state", "State", display.number),
    ("target", "Sent to", display.number),
    ("exit_code", "Exit code", display.number),
    ("lines_read", "Lines read", display.number),
    ("blank_lines", "Blank lines", display.number),
    ("records", "Records", display.number),
    ("delivered", "Delivered", display.number),
    ("failed", "Failed", display.number),
    ("unfinished", "Unfinished", display.number),
    ("requests", "Requests", display.number),
    ("retries", "Retries", display.number),
    ("ambiguous_attempts", "Ambiguous attempts", display.number),
    ("possible_duplicates", "Possible duplicates", display.number),
    ("outages", "Outages", display.number),
    ("user_lookups", "User lookups (the billable unit)", display.number),
    ("throttled", "Requests throttled (429, app-wide limit)", display.number),
    ("throttled_share", "Share of requests throttled", display.number),
    ("steady_rate_per_s", "Steady rate (--rate auto), requests per second", display.number),
    ("dry_run", "Dry run", display.number),
    ("records_this_session", "Records this session", display.number),
    ("records_per_s", "Records per second", display.number),
    ("latency_ms", "", display.number),  # one row per percentile, see summary_table
    ("started_at", "Started at", display.number),
    ("ended_at", "Ended at", display.number),
    ("elapsed_s", "Elapsed", display.duration),
    ("stopped_by", "Stopped by", display.number),
    ("workers", "Workers", display.number),
    ("shard", "Shard", display.number),
    ("run_id", "Run id", display.number),
    ("version", "Summary format version", display.number),
)
# Shown elsewhere on the page (or not numbers to show).
_SHOWN_ELSEWHERE = frozenset({
    "latency_ms", "failed_latency_ms", "latency_histogram_ms", "failures_by_kind",
    "settings", "per_worker", "inputs", "stopped_because", "resume_with",
    "request_latency_ms", "behind_schedule_ms", "thresholds", "estimate_max",
})


def summary_table(data: RunData) -> str:
    """The counts of summary.json, with the rows of metrics and failures read."""
    s = data.summary
    rows: list[tuple[str, str]] = []
    for key, label, show in _SUMMARY_ROWS:
        if key == "latency_ms":
            latency = mapping(s.get(key))
            rows += [(f"Latency {p} (delivered)", display.ms(latency.get(p)))
                     for p in ("p50", "p90", "p99", "max")]
        elif key in s:
            rows.append((label, show(s[key])))
    high = s.get("estimate_max")
    if isinstance(high, Mapping):  # a dry run of an input larger than its read-ahead
        rows += [(f"{label}, up to (a server slower than the reading)",
                  display.number(high.get(key)))
                 for key, label in (("requests", "Requests"), ("user_lookups", "User lookups"))]
    resumed = s.get("resumed")
    if isinstance(resumed, Mapping):
        rows += [(f"Resumed: {k.replace('_', ' ')}", display.number(v))
                 for k, v in resumed.items()]
    known = {key for key, _, _ in _SUMMARY_ROWS} | _SHOWN_ELSEWHERE | {"resumed"}
    # A key this version does not know (a newer summary.json) still gets words.
    rows += [(str(key).replace("_", " ").capitalize(), display.number(v))
             for key, v in s.items() if key not in known and not isinstance(v, dict | list)]
    rows.append(("metrics.ndjson rows", display.number(data.metrics.rows)
                 if data.has_metrics else "no file"))
    rows.append(("failures.ndjson rows", display.number(data.failures.rows)
                 if data.has_failures else "no file"))
    return '<h2 id="summary">Summary</h2>' + table(("", ""), rows, numeric=(1,),
                                                    table_id="summary-table")


def latency_table(s: Mapping[str, Any]) -> str:
    """Latency percentiles of delivered and of failed records."""
    outcomes = (("delivered", mapping(s.get("latency_ms"))),
                ("failed", mapping(s.get("failed_latency_ms"))))
    rows = [(name, *(display.ms(values.get(p)) for p in ("p50", "p90", "p99", "max")))
            for name, values in outcomes]
    return ('<h2 id="latency">Latency by outcome</h2>'
            + table(("outcome", "p50", "p90", "p99", "max"), rows, numeric=(1, 2, 3, 4),
                    table_id="latency-table"))


# The latency views of a load test, one row each: label, summary.json key (view), meaning.
_VIEWS = (
    ("service", "request_latency_ms", "service",
     "per request, from the moment it was actually sent"),
    ("scheduled", "request_latency_ms", "scheduled",
     "per request, from the moment it was planned to go (includes any wait to be sent)"),
    ("behind schedule", "behind_schedule_ms", None,
     "how late requests went out after their planned time"),
)
_VIEW_COLUMNS = ("p50", "p90", "p99", "p99.9", "p99.99", "max")


def request_latency_table(s: Mapping[str, Any], *, schedule: bool) -> str:
    """The views of request latency: service, and for a run that held a `schedule` the
    scheduled view and how late requests went; '' without them."""
    views = mapping(s.get("request_latency_ms"))
    if not views:
        return ""
    shown = _VIEWS if schedule else _VIEWS[:1]
    rows = []
    for label, key, view, _ in shown:
        values = mapping(s.get(key)) if view is None else mapping(views.get(view))
        if values:
            rows.append((label, *(display.ms(values.get(p)) for p in _VIEW_COLUMNS)))
    notes = ('<p class="note">' + "; ".join(f"{esc(label)}: {esc(meaning)}"
                                           for label, _, _, meaning in shown) + ".</p>")
    title = "Request latency: service and scheduled" if schedule else "Request latency"
    return (f'<h2 id="request-latency">{title}</h2>'
            + table(("view", *_VIEW_COLUMNS), rows,
                    numeric=tuple(range(1, len(_VIEW_COLUMNS) + 1)),
                    table_id="request-latency-table") + notes)


def thresholds_table(s: Mapping[str, Any]) -> str:
    """The --fail-if verdicts; '' when the run had none."""
    verdicts = thresholds(s)
    if not verdicts:
        return ""
    rows = [(t.get("threshold"), display.number(t.get("value")),
             "FAIL" if t.get("failed") is True else "pass", t.get("text", ""))
            for t in verdicts]
    failed = len(failed_thresholds(s))
    head = (f"{failed} of {len(verdicts)} failed" if failed
            else f"all {len(verdicts)} passed")
    return (f'<h2 id="thresholds">Thresholds: {esc(head)}</h2>'
            + table(("threshold", "measured", "result", "verdict"), rows, numeric=(1,),
                    message=3, verdict=2, table_id="thresholds-table")
            + '<p class="note">--fail-if: the run fails (exit code 6) when a threshold '
              'holds. Latency is in ms, error_rate a fraction.</p>')


def schedule_table(data: RunData) -> str:
    """Planned against sent requests, for a run that followed a plan; else ''."""
    if not data.followed_a_plan:
        return ""
    m, settings = data.metrics, mapping(data.summary.get("settings"))
    sent, planned = sum(m.requests), m.planned_total
    rows = [
        ("Plan", _plan(settings)),
        ("Requests planned", display.number(planned) if planned is not None
         else "each record at its recorded time"),
        ("Requests sent", display.number(sent)),
    ]
    if planned:
        rows.append(("Sent / planned", f"{100.0 * sent / planned:.1f}%"))
    for label, values in (("scheduled", m.scheduled_p99_ms), ("delivered", m.delivered_p99_ms)):
        rows.append((f"Worst p99 of a second, {label}", _worst_second(m, values)))
    return ('<h2 id="schedule">Schedule</h2>'
            + table(("", ""), rows, numeric=(1,), table_id="schedule-table")
            + '<p class="note">Counts from metrics.ndjson, summed over its rows.</p>')


def _worst_second(m: Metrics, p99_ms: list[float | None]) -> str:
    """The highest per-second p99 and when its second ended (the first, on a tie)."""
    seconds = [i for i, v in enumerate(p99_ms) if v is not None]
    if not seconds:
        return display.NONE
    i = max(seconds, key=lambda k: p99_ms[k] or 0.0)
    return (f"{display.ms(p99_ms[i])} (second ending at "
            f"{display.number(round(m.edges_s[i + 1], 3))} s)")


def _plan(settings: Mapping[str, Any]) -> str:
    """The pacing options of the run, as given."""
    parts = []
    if settings.get("pace") == "original":
        parts.append(f"--pace original --speed {display.number(settings.get('speed'))}")
    elif settings.get("rate_schedule"):
        parts.append(f"--rate {settings['rate_schedule']}")
    elif settings.get("rate_per_s") is not None:
        parts.append(f"--rate {display.number(settings['rate_per_s'])}")
    if settings.get("duration_s") is not None:
        parts.append(f"--duration {display.number(settings['duration_s'])}s")
    return " ".join(parts) or display.NONE


def kinds_table(data: RunData) -> str:
    """Failed records by kind, each with an example message."""
    s, tally = data.summary, data.failures
    head = '<h2 id="failures">Failures by kind</h2>'
    kinds = mapping(s.get("failures_by_kind"))
    if not kinds:
        return head + '<p class="note">No failures: every record read was delivered.</p>'
    failed = sum(n for n in kinds.values() if isinstance(n, int))
    ordered = sorted(kinds.items(), key=lambda kv: (-num(kv[1]), str(kv[0])))
    rows = [(kind, display.number(n), display.percent(num(n), failed),
             tally.examples.get(str(kind), "")) for kind, n in ordered]
    note = ""
    if not data.has_failures:
        note = '<p class="note">failures.ndjson is missing: no example messages.</p>'
    return head + table(("kind", "records", "share", "example message"), rows,
                        numeric=(1, 2), message=3,
                        table_id="failure-kinds") + note


def users_table(data: RunData) -> str:
    """The users section: from users.ndjson, else the most-failing users of failures.ndjson."""
    if data.users is not None:
        return _users_section(data.users, without_user=data.failures.without_user)
    tally = data.failures
    head = '<h2 id="users">Most-failing users</h2>'
    if not tally.top_users:
        return head + '<p class="note">No failure in failures.ndjson names a user.</p>'
    rows = [(display.number(rank), u.user, "deviceId" if u.by_device_id else "userId",
             display.number(u.failures), display.counts(u.kinds))
            for rank, u in enumerate(tally.top_users, start=1)]
    notes = [(f"{display.number(tally.users)} users had at least one failure (from "
              "failures.ndjson, by userId, else deviceId).")]
    if tally.without_user:
        notes.append(f"{display.number(tally.without_user)} failures name no user "
                     "(lines that did not parse or had no id).")
    if tally.unreadable_rows:
        notes.append(f"{display.number(tally.unreadable_rows)} rows could not be read.")
    return (head + table(("#", "user", "id", "failures", "kinds"), rows, numeric=(0, 3),
                         table_id="top-users")
            + "".join(f'<p class="note">{esc(n)}</p>' for n in notes))


def _users_section(users: UsersTally, *, without_user: int) -> str:
    """From users.ndjson: users by how much of theirs was delivered, and the most-failing."""
    share = [("Users", display.number(users.users), "")] + [
        (label, display.number(count), display.percent(count, users.users))
        for label, count in (("Every record delivered", users.fully_delivered),
                             ("Some records delivered", users.partly_delivered),
                             ("No record delivered", users.none_delivered))]
    parts = ['<h2 id="users">Users</h2>',
             table(("", "users", "share"), share, numeric=(1, 2), table_id="users-counts")]
    if users.top:
        rows = [(display.number(rank), u.key, "userId" if u.user_id else "deviceId",
                 display.number(u.records), display.number(u.delivered),
                 display.number(u.failures),
                 display.counts(sorted(u.failed.items(), key=lambda kv: (-kv[1], kv[0]))))
                for rank, u in enumerate(users.top, start=1)]
        parts.append(table(("#", "user", "id", "records", "delivered", "failures", "kinds"),
                           rows, numeric=(0, 3, 4, 5), table_id="top-users"))
    notes = [f"From users.ndjson: one row per user (by userId, else deviceId). "
             f"{display.number(users.with_failures)} users had at least one failure"
             + (f"; the {display.number(len(users.top))} with the most are listed."
                if users.top else ".")]
    if without_user:
        notes.append(f"{display.number(without_user)} failures name no user "
                     "(lines that did not parse or had no id).")
    if users.unreadable_rows:
        notes.append(f"{display.number(users.unreadable_rows)} rows could not be read.")
    return "".join(parts) + "".join(f'<p class="note">{esc(n)}</p>' for n in notes)


def workers_table(s: Mapping[str, Any]) -> str:
    """One row per worker process; '' for a run in one process."""
    workers = s.get("per_worker")
    if not isinstance(workers, list) or not workers:
        return ""
    keys = ("state", "exit_code", "records", "delivered", "failed", "unfinished")
    rows = [(display.number(i), *(display.number(mapping(w).get(k)) for k in keys))
            for i, w in enumerate(workers)]
    return ('<h2 id="workers">Workers</h2>'
            + table(("worker", *keys), rows, numeric=(0, 2, 3, 4, 5, 6),
                    table_id="workers-table"))


def settings_table(s: Mapping[str, Any]) -> str:
    """The run's settings as summary.json records them; '' without any."""
    settings = mapping(s.get("settings"))
    if not settings:
        return ""
    rows = [(name, display.setting(str(name), value)) for name, value in settings.items()]
    return '<h2 id="settings">Settings</h2>' + table(("setting", "value"), rows,
                                                          table_id="settings-table")


def files_table(data: RunData) -> str:
    """The output folder's files and their sizes."""
    rows = [(name, display.number(size)) for name, size in data.file_sizes]
    return '<h2 id="files">Files</h2>' + table(("file", "bytes"), rows, numeric=(1,),
                                                    table_id="files-table")

