"""The end of a run's folder: users.ndjson, summary.json, then run.json's final state."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from pathlib import Path

from replayer.observe.logs import log
from replayer.output import summary as run_summary
from replayer.output.layout import SUMMARY
from replayer.output.live_users import LiveUsers
from replayer.output.runfile import RunRecord, write_run
from replayer.output.sinks import OutputError, write_atomic
from replayer.output.summary import RunSummary
from replayer.output.user_rows import UsersStats
from replayer.output.users import write_part, write_users
from replayer.records import ExitCode, worst


def close_folder(out_dir: Path, summary: RunSummary, record: RunRecord, *,
                 inputs: Sequence[str], users: bool = True, live: LiveUsers | None = None,
                 tallied: Callable[[Path], UsersStats | None] | None = None) -> RunSummary:
    """Writes the files that end a run (a single run's, or a merged one's) and returns the
    summary as it ends. When they cannot be written, the run ends as an output failure:
    said in one line, and a resume writes them again. `users`: whether this folder gets
    users.ndjson (a worker's folder does not: it gets its part of it, from `live`, which
    its parent merges; a Spark partition's has no tally). `live`, the users tallied as
    the rows were written, or `tallied`, what writes them so (the workers' parts merged),
    spares reading the rows again."""
    try:
        try:
            if users:
                write_users(out_dir, inputs=inputs, live=live.write if live else tallied)
            elif live is not None:
                write_part(out_dir, functools.partial(live.write, part=True))
        except OSError as exc:
            raise OutputError(f"cannot write the users of {out_dir}: {exc.strerror}") from None
        write_atomic(out_dir / SUMMARY, run_summary.encode(summary))
        write_run(out_dir, record.with_state(summary.state))
    except OutputError as exc:
        log.error("%s", exc)
        code = worst([summary.exit_code, ExitCode.OUTPUT])
        return dataclasses.replace(summary, exit_code=int(code), state=code.state,
                                   stopped_because=summary.stopped_because or str(exc))
    return summary
