"""report.html: one self-contained page (inline CSS, charts as data: URLs, no script). Pure.

Everything taken from the output files is HTML-escaped; a Content-Security-Policy lets
the page load nothing but its own inline images and styles.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from replayer.report import display
from replayer.report.load import RunData
from replayer.report.markup import esc, failed_thresholds, mapping, thresholds
from replayer.report.sections import (
    files_table,
    kinds_table,
    latency_table,
    request_latency_table,
    schedule_table,
    settings_table,
    summary_table,
    thresholds_table,
    users_table,
    workers_table,
)

CHARTS = ("throughput", "schedule", "rate", "latency", "failures", "retries")
CAPTIONS = {
    "throughput": (
        "Requests sent, records delivered and records failed in each second of the run "
        "(one metrics.ndjson row each), each in a panel with its own scale. Shaded: seconds in an outage; dashed: a resumed "
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
.badge-ok{background:#d9f2e3;color:#185c33}.badge-bad{background:#fadbdb;
 color:#8a1c1c}.badge-warn{background:#fdf0cf;color:#7a5600}
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



def render_html(data: RunData, images: Mapping[str, bytes]) -> str:
    """The whole page; `images` maps each chart name in CHARTS to its PNG bytes."""
    s = data.summary
    parts = [
        _head(data),
        _header(data),
        _alerts(data),
        _cards(data),
        thresholds_table(s),
        '<h2 id="charts">Charts</h2>',
        *(_figure(name, images[name]) for name in CHARTS if name in images),
        summary_table(data),
        latency_table(s),
        request_latency_table(s, schedule=data.followed_a_plan),
        schedule_table(data),
        kinds_table(data),
        users_table(data),
        workers_table(s),
        settings_table(s),
        files_table(data),
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
        f"{' (thresholds failed)' if failed_thresholds(data.summary) else ''}</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n<body>"
    )


def _header(data: RunData) -> str:
    s = data.summary
    state = str(s.get("state"))
    inputs = s.get("inputs")
    read = (f" · inputs: {', '.join(f'<code>{esc(p)}</code>' for p in inputs)}"
            if isinstance(inputs, list) and inputs else "")
    target = (f'<p class="target">sent to {esc(s["target"])}</p>'
              if isinstance(s.get("target"), str) else "")
    verdicts = thresholds(s)
    verdict = ("" if not verdicts else
               '<span class="state verdict-failed">thresholds failed</span> '
               if failed_thresholds(s) else
               '<span class="state verdict-passed">thresholds passed</span> ')
    return (
        "<header><h1>Replay report</h1>"
        f"<p class=\"where\">{esc(data.out_dir)}</p>"
        f"<p><span class=\"state badge-{badge(s)}\">{esc(state)}</span> {verdict}"
        f"exit code {esc(display.number(s.get('exit_code')))}"
        f" · {esc(s.get('started_at', display.NONE))} → {esc(s.get('ended_at', display.NONE))}"
        f"{read}</p>{target}</header>"
    )


def badge(s: Mapping[str, Any]) -> str:
    """The colour of the state's badge, from the exit code: ok (green) only for 0, bad
    (red) for an aborted run, warn (amber) for failures, a failed threshold or a signal."""
    if s.get("state") == "aborted":
        return "bad"
    code = s.get("exit_code")
    clean = type(code) is int and code == 0 and s.get("state") == "finished"
    return "ok" if clean else "warn"


def _alerts(data: RunData) -> str:
    s, out = data.summary, []
    if s.get("stopped_because"):
        out.append(f"Stopped because: {esc(s['stopped_because'])}")
    out += [f"Threshold failed: {esc(t.get('text', t.get('threshold')))}"
            for t in failed_thresholds(s)]
    if s.get("resume_with"):
        out.append(f"Resume with: <code>{esc(s['resume_with'])}</code>")
    return "".join(f'<p class="alert">{line}</p>' for line in out)


def _cards(data: RunData) -> str:
    s = data.summary
    latency = mapping(s.get("latency_ms"))
    scheduled = mapping(mapping(s.get("request_latency_ms")).get("scheduled"))
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

