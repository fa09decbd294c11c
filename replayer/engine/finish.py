"""Finisher: the one place a record's row is written, counted and logged."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from replayer.engine.classify import Outcome
from replayer.engine.lanes import Lane, Work
from replayer.engine.stats import RunStats
from replayer.observe.logs import about, log
from replayer.output.live_users import LiveUsers
from replayer.output.sinks import NdjsonSink, failure_row, invalid_row, result_row
from replayer.records import FailureKind, RecordFailure

if TYPE_CHECKING:
    from replayer.engine.attempt import Answers, Sent


class Finisher:
    """Ends records: each call writes exactly one row per record and counts it once. The one
    writer of the run's counters (requests, rows, retries, latencies)."""

    def __init__(self, *, results: NdjsonSink, failures: NdjsonSink, stats: RunStats,
                 save_responses: bool, dry_run: bool, users: LiveUsers | None = None) -> None:
        self._users = users  # users.ndjson kept as rows are written (a fresh, single run)
        self._results = results
        self._failures = failures
        self._stats = stats
        self._save_responses = save_responses
        self._status = "dry_run" if dry_run else "delivered"

    def delivered(self, work: Work, outcome: Outcome) -> None:
        """A delivered record (or, in a dry run, one that would have been sent)."""
        row = result_row(work, outcome, save_response=self._save_responses, status=self._status)
        self._results.write(row)
        if self._users is not None:
            s = work.session
            self._users.row(s.user_id, s.device_id, s.file, s.line_no, s.pass_no, result=True,
                            what=self._status, vars=row["vars"], variants=row["variants"])
        self._stats.delivered(latency_ms=work.latency_ms)
        self._stats.ambiguous_attempts += work.ambiguous
        if log.isEnabledFor(logging.DEBUG):
            s = work.session
            log.debug("delivered after %d attempt(s)", work.attempts,
                      extra=about(s.file, s.line_no, s.lane))

    def delivered_take(self, parts: Sequence[tuple[Lane, Sequence[Work]]],
                       answers: Answers) -> None:
        """A take whose every record was delivered: one pass over its records for the rows,
        the counters once per request (its records share its latency)."""
        outcomes, latencies = answers.outcomes, answers.latency_ms
        write, users, status = self._results.write, self._users, self._status
        save = self._save_responses
        ambiguous = 0
        i = 0
        for _, works in parts:
            for work in works:
                outcome = outcomes[i]
                assert outcome is not None
                work.attempts += 1  # the settler's write, done in this same pass
                work.latency_ms = latencies[i]
                i += 1
                row = result_row(work, outcome, save_response=save, status=status)
                write(row)
                if users is not None:
                    s = work.session
                    users.row(s.user_id, s.device_id, s.file, s.line_no, s.pass_no,
                              result=True, what=status, vars=row["vars"],
                              variants=row["variants"])
                ambiguous += work.ambiguous
        stats = self._stats
        for sent in answers.sent:
            if sent.answered:
                stats.delivered(latency_ms=sent.service_ms, count=sent.answered)
        stats.ambiguous_attempts += ambiguous
        if log.isEnabledFor(logging.DEBUG):
            for _, works in parts:
                for work in works:
                    s = work.session
                    log.debug("delivered after %d attempt(s)", work.attempts,
                              extra=about(s.file, s.line_no, s.lane))

    def requests(self, sent: Sequence[Sent]) -> None:
        """Counts the HTTP requests of one take and times each."""
        stats = self._stats
        for one in sent:
            stats.request(users=one.users)
            stats.answered(service_ms=one.service_ms, scheduled_ms=one.scheduled_ms,
                           behind_ms=one.behind_ms)

    def retrying(self, n: int) -> None:
        """Counts `n` records that will be sent again."""
        self._stats.retried(n)

    def failed(self, work: Work, kind: FailureKind, message: str,
               http_status: int | None) -> None:
        """A valid record that was not delivered."""
        s = work.session
        # A warning is an answer, not an error: the record was received, most likely not taken.
        what = "received with a warning" if kind is FailureKind.WARNING else "failed"
        log.info("%s (%s) after %d attempt(s): %s", what, kind, work.attempts, message,
                 extra=about(s.file, s.line_no, s.lane, kind))
        self._failures.write(failure_row(work, kind, message, http_status))
        if self._users is not None:
            self._users.row(s.user_id, s.device_id, s.file, s.line_no, s.pass_no, result=False,
                            what=str(kind))
        self._stats.failed(kind, latency_ms=work.latency_ms if work.attempts else None)
        self._stats.ambiguous_attempts += work.ambiguous

    def invalid(self, failure: RecordFailure, *, pass_no: int = 1) -> None:
        """A line that failed validation: never sent."""
        row = invalid_row(failure)
        if pass_no > 1:
            row["pass"] = pass_no
        self._failures.write(row)
        if self._users is not None:
            self._users.row(failure.user_id, failure.device_id, failure.file, failure.line_no,
                            pass_no, result=False, what=str(failure.kind))
        self._stats.failed(failure.kind)
        log.info("invalid, not sent (%s): %s", failure.kind, failure.message,
                 extra=about(failure.file, failure.line_no,
                             failure.user_id or failure.device_id, failure.kind))
