"""What `replayer run` prints at its end: the summary in a few lines."""

from __future__ import annotations

from pathlib import Path

import click

from replayer.observe.logs import say
from replayer.output.summary import RunSummary


def print_summary(s: RunSummary, out_dir: Path) -> None:
    """The lines `replayer run` ends with: counts, latency, why it stopped, how to resume."""
    lat = s.latency_ms
    click.echo(
        f"{s.state}: {s.records} records from {s.lines_read} lines in "
        f"{s.elapsed_s:.2f} s ({s.records_per_s:.0f} records/s)"
    )
    click.echo(f"  sent to {s.target}")
    done = "would send" if s.dry_run else "delivered"
    click.echo(f"  {done} {s.delivered}, failed {s.failed}"
               + (f", unfinished {s.unfinished}" if s.unfinished else ""))
    if s.failures_by_kind:
        kinds = ", ".join(f"{k} {n}" for k, n in s.failures_by_kind.items())
        click.echo(f"  failures by kind: {kinds}")
    if lat.get("p50") is not None and not s.dry_run:
        click.echo(f"  latency ms: p50 {lat['p50']}, p90 {lat['p90']}, p99 {lat['p99']}, "
                   f"max {lat['max']}")
    if s.dry_run:
        click.echo(f"  dry run, nothing sent: {s.requests} API calls carrying "
                   f"{s.user_lookups} user lookups (the billable unit) would go out; "
                   f"bodies in {out_dir}/requests.ndjson")
        if s.estimate_max is not None:
            click.echo(f"  the input is larger than the read-ahead: a server slower than the "
                       f"reading would take up to {s.estimate_max['requests']} calls and "
                       f"{s.estimate_max['user_lookups']} lookups; retries come on top")
    for verdict in s.thresholds:
        click.echo(f"  threshold {verdict['text']}")
    behind_p99, behind_max = s.behind_schedule_ms.get("p99"), s.behind_schedule_ms.get("max")
    if s.held_schedule and (behind_p99 or 0) > 1000 and behind_max is not None:
        click.echo(f"  behind schedule: p99 {(behind_p99 or 0) / 1000:.1f} s, "
                   f"max {behind_max / 1000:.1f} s (the target could not keep up)")
    if s.stopped_by:
        click.echo(f"  stopped by {s.stopped_by}")
    if s.stopped_because:
        say(f"  stopped because {s.stopped_because}")  # on the log stream, in its format
    click.echo(f"  outputs in {out_dir}/ (results.ndjson, failures.ndjson, "
               "users.ndjson, summary.json)")
    if s.resume_with:
        click.echo(f"  resume with: {s.resume_with}")
