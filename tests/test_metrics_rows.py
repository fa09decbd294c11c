"""metrics.ndjson rows: the fields the progress display reads, and rows of older versions."""

from __future__ import annotations

import orjson

from replayer.output.metrics import MetricsRow, decode_row, encode_row, merge_by_second


def test_a_row_of_an_older_version_reads_with_the_new_fields_at_their_defaults() -> None:
    old = orjson.dumps({"t": 100.0, "elapsed_s": 1.0, "delivered": 3, "lines_read": 3,
                        "bytes_read": 30, "bytes_total": 60, "outage": False})
    row = decode_row(old)
    assert (row.records_read, row.records_seen, row.blank_lines, row.input_ended,
            row.prior_delivered, row.prior_failed_by_kind) == (0, 0, 0, False, 0, {})


def test_the_progress_fields_round_trip() -> None:
    row = MetricsRow(t=1.0, records_read=9, records_seen=10, blank_lines=1, input_ended=True,
                     prior_delivered=4,
                     prior_failed_by_kind={"warning": 1})
    assert decode_row(encode_row(row)) == row


def test_merge_sums_each_process_share_and_ends_when_all_ended() -> None:
    a = MetricsRow(t=100.2, lines_read=50, blank_lines=2, records_read=20, records_seen=48,
                   input_ended=True,
                   prior_delivered=3, prior_failed_by_kind={"timeout": 1})
    b = MetricsRow(t=100.7, lines_read=50, blank_lines=2, records_read=28, records_seen=48,
                   input_ended=False,
                   prior_delivered=5, prior_failed_by_kind={"timeout": 2, "warning": 1})
    (merged,) = merge_by_second([a, b])
    assert (merged.lines_read, merged.blank_lines, merged.input_ended) == (50, 2, False)
    assert (merged.records_read, merged.records_seen) == (48, 48)  # shares summed; seen by all
    assert merged.prior_delivered == 8
    assert merged.prior_failed_by_kind == {"timeout": 3, "warning": 1}
    (ended,) = merge_by_second([a, MetricsRow(t=100.9, input_ended=True)])
    assert ended.input_ended
