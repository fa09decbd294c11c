"""report.html: one self-contained page (inline CSS, charts as data: URLs, no script). Pure.

Everything taken from the output files is HTML-escaped; a Content-Security-Policy lets
the page load nothing but its own inline images and styles.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping
from typing import Any

from replayer.report import display
from replayer.report.load import Metrics, RunData, UsersTally

# schedule: runs on a plan; rate: runs with --rate auto
CHARTS = ("throughput", "schedule", "rate", "latency", "failures", "retries")
CAPTIONS = {
    "throughput": (
        "Requests sent, records delivered and records failed in each second of the run "
        "(one metrics.ndjson row each). Shaded: seconds in an outage; dashed: a resumed "
        "run begins."),
    "schedule": (
        "Top: requests the schedule planned (dashed) and requests sent in each second "
        "(metrics.ndjson). Bottom, log scale: the p99 of each second in the scheduled view "
        "(each request timed from when it was planned to go) against delivered records' p99. "
        "A stalled server holds back the requests planned meanwhile: the scheduled p99 "
        "climbs while delivered latency can stay low. Grey: seconds in which nothing was "
        "answered."),
    "rate": (
        "--rate auto. Top: the rate the controller paced at (planned, dashed) and the "
        "requests sent (achieved) in each second. Bottom: 429 answers in each second: "
        "throttled ones (the app-wide limit: they lower the rate) and per-user ones "
        "(profile lock, devMode: they do not)."),
    "latency": (
        "Left: how request latency is spread, as a share of the delivered and of the failed "
        "records (log scale, 10 groups per decade), with the p50/p90/p99 lines; for a run on "
        "a plan (--rate, --pace original), also the scheduled view, per request from its "
        "planned send time. Right: p50, p90, p99 and max of each (summary.json)."),
    "failures": (
        "Failed records in each second, stacked by failure kind (metrics.ndjson). "
        "Validation failures come as lines are read; sending failures after the last "
        "attempt."),
    "retries": (
        "Top: retries sent in each second. Bottom: records waiting for their next attempt "
        "at the end of each second (metrics.ndjson)."),
}
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d232a;
 margin:0 auto;max-width:1080px;padding:24px}
h1{margin:0 0 4px;font-size:26px}h2{margin:32px 0 10px;font-size:19px;
 border-bottom:1px solid #dde2e7;padding-bottom:4px}
.where{color:#5b6570;margin:0 0 8px;word-break:break-all}
.state{display:inline-block;padding:1px 9px;border-radius:10px;font-weight:600;
 background:#e6eaee}
.state-finished{background:#d9f2e3;color:#185c33}.state-aborted{background:#fadbdb;
 color:#8a1c1c}.state-interrupted{background:#fdf0cf;color:#7a5600}
.verdict-failed{background:#d62728;color:#fff}.verdict-passed{background:#d9f2e3;
 color:#185c33}td.fail{color:#b01c1c;font-weight:700}td.pass{color:#185c33}
.alert{background:#fdecea;border-left:4px solid #d62728;padding:8px 12px;margin:12px 0}
.note{color:#5b6570;font-size:13px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:10px;
 margin:18px 0}
.card{border:1px solid #dde2e7;border-radius:6px;padding:8px 12px}
.card .label{color:#5b6570;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .value{font-size:21px;font-weight:600;font-variant-numeric:tabular-nums}
figure{margin:0 0 18px}figure img{max-width:100%;height:auto;border:1px solid #eef1f4}
figcaption{color:#5b6570;font-size:13px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:14px}
th,td{text-align:left;padding:4px 12px 4px 0;border-bottom:1px solid #eef1f4;
 vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
th{font-weight:600;color:#3b444d}td.msg{color:#3b444d;word-break:break-word}
code{font-size:13px;word-break:break-all}
footer{margin-top:36px;color:#8a939c;font-size:12px}
"""


def esc(value: Any) -> str:
    """Any value as escaped HTML text."""
    return html.escape(str(value), quote=True)


def render_html(data: RunData, images: Mapping[str, bytes]) -> str:
    """The whole page; `images` maps each chart name in CHARTS to its PNG bytes."""
    s = data.summary
    parts = [
        _head(data),
        _header(data),
        _alerts(data),
        _cards(data),
        _thresholds_table(s),
        '<h2 id="charts">Charts</h2>',
        *(_figure(name, images[name]) for name in CHARTS if name in images),
        _summary_table(data),
        _latency_table(s),
        _request_latency_table(s),
        _schedule_table(data),
        _kinds_table(data),
        _users_table(data),
        _workers_table(s),
        _settings_table(s),
        _files_table(data),
        (f"<footer>Made by <code>replayer report</code> from the files in "
         f"<code>{esc(data.out_dir)}</code>.</footer>"),
        "</body>\n</html>\n",
    ]
    return "\n".join(p for p in parts if p)


# ---- page parts ----------------------------------------------------------------------


def _head(data: RunData) -> str:
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{_CSP}\">\n"
        f"<title>Replay report: {esc(data.out_dir.name or data.out_dir)}"
        f"{' (thresholds failed)' if _failed_thresholds(data.summary) else ''}</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n<body>"
    )


def _header(data: RunData) -> str:
    s = data.summary
    state = str(s.get("state"))
    inputs = s.get("inputs")
    read = (f" · inputs: {', '.join(f'<code>{esc(p)}</code>' for p in inputs)}"
            if isinstance(inputs, list) and inputs else "")
    verdicts = _thresholds(s)
    verdict = ("" if not verdicts else
               '<span class="state verdict-failed">thresholds failed</span> '
               if _failed_thresholds(s) else
               '<span class="state verdict-passed">thresholds passed</span> ')
    return (
        "<header><h1>Replay report</h1>"
        f"<p class=\"where\">{esc(data.out_dir)}</p>"
        f"<p><span class=\"state state-{esc(state)}\">{esc(state)}</span> {verdict}"
        f"exit code {esc(display.number(s.get('exit_code')))}"
        f" · {esc(s.get('started_at', display.NONE))} → {esc(s.get('ended_at', display.NONE))}"
        f"{read}</p></header>"
    )


def _alerts(data: RunData) -> str:
    s, out = data.summary, []
    if s.get("stopped_because"):
        out.append(f"Stopped because: {esc(s['stopped_because'])}")
    out += [f"Threshold failed: {esc(t.get('text', t.get('threshold')))}"
            for t in _failed_thresholds(s)]
    if s.get("resume_with"):
        out.append(f"Resume with: <code>{esc(s['resume_with'])}</code>")
    return "".join(f'<p class="alert">{line}</p>' for line in out)


def _cards(data: RunData) -> str:
    s = data.summary
    latency = _mapping(s.get("latency_ms"))
    scheduled = _mapping(_mapping(s.get("request_latency_ms")).get("scheduled"))
    cards = [
        ("records", display.number(s.get("records"))),
        ("delivered", display.number(s.get("delivered"))),
        ("failed", display.number(s.get("failed"))),
        ("unfinished", display.number(s.get("unfinished"))),
        ("records/s", display.number(s.get("records_per_s"))),
        ("p99 latency", display.ms(latency.get("p99"))),
    ]
    if data.followed_a_plan and scheduled.get("p99") is not None:
        cards.append(("p99 scheduled", display.ms(scheduled.get("p99"))))
    return '<section class="cards">' + "".join(
        f'<div class="card"><div class="label">{esc(label)}</div>'
        f'<div class="value">{esc(value)}</div></div>' for label, value in cards
    ) + "</section>"


def _figure(name: str, png: bytes) -> str:
    b64 = base64.b64encode(png).decode("ascii")
    caption = CAPTIONS[name]
    return (f'<figure id="chart-{name}"><img src="data:image/png;base64,{b64}" '
            f'alt="{esc(caption)}"><figcaption>{esc(caption)}</figcaption></figure>')


# Rows of the summary table: key in summary.json, label, how to show it.
_SUMMARY_ROWS = (
    ("state", "State", display.number),
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
    ("records_per_s", "Records per second", display.number),
    ("latency_ms", "", display.number),  # one row per percentile, see _summary_table
    ("started_at", "Started at", display.number),
    ("ended_at", "Ended at", display.number),
    ("elapsed_s", "Elapsed", display.duration),
    ("stopped_by", "Stopped by", display.number),
    ("workers", "Workers", display.number),
)
# Shown elsewhere on the page (or not numbers to show).
_SHOWN_ELSEWHERE = frozenset({
    "latency_ms", "failed_latency_ms", "latency_histogram_ms", "failures_by_kind",
    "settings", "per_worker", "inputs", "stopped_because", "resume_with",
    "request_latency_ms", "behind_schedule_ms", "thresholds",
})


def _summary_table(data: RunData) -> str:
    s = data.summary
    rows: list[tuple[str, str]] = []
    for key, label, show in _SUMMARY_ROWS:
        if key == "latency_ms":
            latency = _mapping(s.get(key))
            rows += [(f"Latency {p} (delivered)", display.ms(latency.get(p)))
                     for p in ("p50", "p90", "p99", "max")]
        elif key in s:
            rows.append((label, show(s[key])))
    resumed = s.get("resumed")
    if isinstance(resumed, Mapping):
        rows += [(f"Resumed: {k.replace('_', ' ')}", display.number(v))
                 for k, v in resumed.items()]
    known = {key for key, _, _ in _SUMMARY_ROWS} | _SHOWN_ELSEWHERE | {"resumed"}
    rows += [(key, display.number(v)) for key, v in s.items()
             if key not in known and not isinstance(v, dict | list)]
    rows.append(("metrics.ndjson rows", display.number(data.metrics.rows)
                 if data.has_metrics else "no file"))
    rows.append(("failures.ndjson rows", display.number(data.failures.rows)
                 if data.has_failures else "no file"))
    return '<h2 id="summary">Summary</h2>' + _table(("", ""), rows, numeric=(1,),
                                                     table_id="summary-table")


def _latency_table(s: Mapping[str, Any]) -> str:
    outcomes = (("delivered", _mapping(s.get("latency_ms"))),
                ("failed", _mapping(s.get("failed_latency_ms"))))
    rows = [(name, *(display.ms(values.get(p)) for p in ("p50", "p90", "p99", "max")))
            for name, values in outcomes]
    return ('<h2 id="latency">Latency by outcome</h2>'
            + _table(("outcome", "p50", "p90", "p99", "max"), rows, numeric=(1, 2, 3, 4),
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


def _request_latency_table(s: Mapping[str, Any]) -> str:
    views = _mapping(s.get("request_latency_ms"))
    if not views:
        return ""
    rows = []
    for label, key, view, _ in _VIEWS:
        values = _mapping(s.get(key)) if view is None else _mapping(views.get(view))
        if values:
            rows.append((label, *(display.ms(values.get(p)) for p in _VIEW_COLUMNS)))
    notes = ('<p class="note">' + "; ".join(f"{esc(label)}: {esc(meaning)}"
                                           for label, _, _, meaning in _VIEWS) + ".</p>")
    return ('<h2 id="request-latency">Request latency: service and scheduled</h2>'
            + _table(("view", *_VIEW_COLUMNS), rows,
                     numeric=tuple(range(1, len(_VIEW_COLUMNS) + 1)),
                     table_id="request-latency-table") + notes)


def _thresholds_table(s: Mapping[str, Any]) -> str:
    verdicts = _thresholds(s)
    if not verdicts:
        return ""
    rows = [(t.get("threshold"), display.number(t.get("value")),
             "FAIL" if t.get("failed") is True else "pass", t.get("text", ""))
            for t in verdicts]
    failed = len(_failed_thresholds(s))
    head = (f"{failed} of {len(verdicts)} failed" if failed
            else f"all {len(verdicts)} passed")
    return (f'<h2 id="thresholds">Thresholds: {esc(head)}</h2>'
            + _table(("threshold", "measured", "result", "verdict"), rows, numeric=(1,),
                     message=3, verdict=2, table_id="thresholds-table")
            + '<p class="note">--fail-if: the run fails (exit code 6) when a threshold '
              'holds. Latency is in ms, error_rate a fraction.</p>')


def _schedule_table(data: RunData) -> str:
    if not data.followed_a_plan:
        return ""
    m, settings = data.metrics, _mapping(data.summary.get("settings"))
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
            + _table(("", ""), rows, numeric=(1,), table_id="schedule-table")
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


def _kinds_table(data: RunData) -> str:
    s, tally = data.summary, data.failures
    head = '<h2 id="failures">Failures by kind</h2>'
    kinds = _mapping(s.get("failures_by_kind"))
    if not kinds:
        return head + '<p class="note">No failures: every record read was delivered.</p>'
    failed = sum(n for n in kinds.values() if isinstance(n, int))
    ordered = sorted(kinds.items(), key=lambda kv: (-_num(kv[1]), str(kv[0])))
    rows = [(kind, display.number(n), display.percent(_num(n), failed),
             tally.examples.get(str(kind), "")) for kind, n in ordered]
    note = ""
    if not data.has_failures:
        note = '<p class="note">failures.ndjson is missing: no example messages.</p>'
    return head + _table(("kind", "records", "share", "example message"), rows,
                         numeric=(1, 2), message=3,
                         table_id="failure-kinds") + note


def _users_table(data: RunData) -> str:
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
    return (head + _table(("#", "user", "id", "failures", "kinds"), rows, numeric=(0, 3),
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
             _table(("", "users", "share"), share, numeric=(1, 2), table_id="users-counts")]
    if users.top:
        rows = [(display.number(rank), u.key, "userId" if u.user_id else "deviceId",
                 display.number(u.records), display.number(u.delivered),
                 display.number(u.failures),
                 display.counts(sorted(u.failed.items(), key=lambda kv: (-kv[1], kv[0]))))
                for rank, u in enumerate(users.top, start=1)]
        parts.append(_table(("#", "user", "id", "records", "delivered", "failures", "kinds"),
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


def _workers_table(s: Mapping[str, Any]) -> str:
    workers = s.get("per_worker")
    if not isinstance(workers, list) or not workers:
        return ""
    keys = ("state", "exit_code", "records", "delivered", "failed", "unfinished")
    rows = [(display.number(i), *(display.number(_mapping(w).get(k)) for k in keys))
            for i, w in enumerate(workers)]
    return ('<h2 id="workers">Workers</h2>'
            + _table(("worker", *keys), rows, numeric=(0, 2, 3, 4, 5, 6),
                     table_id="workers-table"))


def _settings_table(s: Mapping[str, Any]) -> str:
    settings = _mapping(s.get("settings"))
    if not settings:
        return ""
    rows = [(name, display.setting(str(name), value)) for name, value in settings.items()]
    return '<h2 id="settings">Settings</h2>' + _table(("setting", "value"), rows,
                                                           table_id="settings-table")


def _files_table(data: RunData) -> str:
    rows = [(name, display.number(size)) for name, size in data.file_sizes]
    return '<h2 id="files">Files</h2>' + _table(("file", "bytes"), rows, numeric=(1,),
                                                     table_id="files-table")


# ---- helpers -------------------------------------------------------------------------


def _table(head: tuple[str, ...], rows: Iterable[tuple[Any, ...]], *,
           numeric: tuple[int, ...] = (), message: int | None = None,
           verdict: int | None = None, table_id: str | None = None) -> str:
    def cell(i: int, value: Any) -> str:
        cls = (' class="n"' if i in numeric else ' class="msg"' if i == message
               else f' class="{"fail" if value == "FAIL" else "pass"}"' if i == verdict
               else "")
        return f"<td{cls}>{esc(value)}</td>"

    ident = f' id="{esc(table_id)}"' if table_id else ""
    header = ("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead>"
              if any(head) else "")
    body = "".join("<tr>" + "".join(cell(i, v) for i, v in enumerate(row)) + "</tr>"
                   for row in rows)
    return f"<table{ident}>{header}<tbody>{body}</tbody></table>"


def _thresholds(s: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """summary.json's threshold verdicts (--fail-if), each a mapping; [] without any."""
    verdicts = s.get("thresholds")
    return [t for t in verdicts if isinstance(t, Mapping)] if isinstance(verdicts, list) else []


def _failed_thresholds(s: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [t for t in _thresholds(s) if t.get("failed") is True]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _num(value: Any) -> int:
    return value if isinstance(value, int) else 0
