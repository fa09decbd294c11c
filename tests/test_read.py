"""Reading NDJSON sources: numbered lines, blanks, CRLF, .gz, over-long lines, skips, chunks."""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from replayer.records import RawLine
from replayer.source.read import CHUNK_LINES, ChunkReader, ReadCounts, iter_lines, total_size

LIMIT = 1 << 20


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def read(
    paths: list[str], *, max_line_bytes: int = LIMIT,
    skip: Callable[[str, int], bool] | None = None,
) -> tuple[list[RawLine], ReadCounts]:
    counts = ReadCounts()
    return list(iter_lines(paths, max_line_bytes=max_line_bytes, counts=counts, skip=skip)), counts


def triples(lines: list[RawLine]) -> list[tuple[str, int, bytes]]:
    return [(r.file, r.line_no, r.data) for r in lines]


# ---- one file ------------------------------------------------------------------------------

# (file content, expected (line_no, data), lines counted, blank lines counted)
CONTENT_CASES: list[tuple[bytes, list[tuple[int, bytes]], int, int]] = [
    (b"", [], 0, 0),
    (b"a\nb\nc\n", [(1, b"a"), (2, b"b"), (3, b"c")], 3, 0),
    (b"a\nb", [(1, b"a"), (2, b"b")], 2, 0),
    (b"a\n\nb\n\n\nc\n", [(1, b"a"), (3, b"b"), (6, b"c")], 6, 3),
    (b"  \n\t\na\n \t \r\n", [(3, b"a")], 4, 3),
    (b'{"a":1}\r\n{"b":2}\r\n', [(1, b'{"a":1}\r'), (2, b'{"b":2}\r')], 2, 0),
    (b"\n", [], 1, 1),
    (b"\n\n\nlast", [(4, b"last")], 4, 3),
    (b" x \n", [(1, b" x ")], 1, 0),
    ("é😀\n".encode(), [(1, "é😀".encode())], 1, 0),
    (b"\xff\xfe bad utf-8\n", [(1, b"\xff\xfe bad utf-8")], 1, 0),
]


@pytest.mark.parametrize(
    ("content", "expected", "n_lines", "n_blank"), CONTENT_CASES,
    ids=["empty", "three", "no-final-newline", "blank-lines", "whitespace-only",
         "crlf-kept", "only-newline", "blanks-then-last", "inner-spaces-kept", "utf8",
         "invalid-utf8-passed-on"],
)
def test_lines_of_one_file(
    tmp_path: Path, content: bytes, expected: list[tuple[int, bytes]], n_lines: int, n_blank: int
) -> None:
    path = write(tmp_path / "in.ndjson", content)
    lines, counts = read([path])
    assert [(r.line_no, r.data) for r in lines] == expected
    assert all(r.file == path and not r.truncated for r in lines)
    assert (counts.lines, counts.blank_lines, counts.skipped_done) == (n_lines, n_blank, 0)
    assert counts.bytes_read == len(content)
    assert counts.files_done == [path]


def test_numbering_restarts_per_file(tmp_path: Path) -> None:
    first = write(tmp_path / "a.ndjson", b"a1\n\na3\n")
    second = write(tmp_path / "b.ndjson", b"b1\nb2")
    lines, counts = read([first, second])
    assert triples(lines) == [
        (first, 1, b"a1"), (first, 3, b"a3"), (second, 1, b"b1"), (second, 2, b"b2")]
    assert (counts.lines, counts.blank_lines) == (5, 1)
    assert counts.files_done == [first, second]
    assert counts.bytes_read == 7 + 5


def test_gz_file_is_decompressed(tmp_path: Path) -> None:
    content = b"".join(b'{"n":%d}\n' % n for n in range(1, 501)) + b"\n" + b'{"n":"last"}'
    path = tmp_path / "in.ndjson.gz"
    path.write_bytes(gzip.compress(content))
    lines, counts = read([str(path)])
    assert len(lines) == 501
    assert lines[0] == RawLine(str(path), 1, b'{"n":1}')
    assert lines[-1] == RawLine(str(path), 502, b'{"n":"last"}')
    assert (counts.lines, counts.blank_lines) == (502, 1)
    assert counts.bytes_read == len(content)  # decompressed bytes


def test_gz_and_plain_files_in_one_run(tmp_path: Path) -> None:
    gz = tmp_path / "a.ndjson.gz"
    gz.write_bytes(gzip.compress(b"a1\na2\n"))
    plain = write(tmp_path / "b.ndjson", b"b1\n")
    lines, _ = read([str(gz), plain])
    assert triples(lines) == [(str(gz), 1, b"a1"), (str(gz), 2, b"a2"), (plain, 1, b"b1")]


# ---- over-long lines -----------------------------------------------------------------------

# max_line_bytes = 8; (content, expected (line_no, data, truncated))
LONG_CASES: list[tuple[bytes, list[tuple[int, bytes, bool]]]] = [
    (b"12345678\nnext\n", [(1, b"12345678", False), (2, b"next", False)]),
    (b"123456789\nnext\n", [(1, b"12345678", True), (2, b"next", False)]),
    (b"x" * 5000 + b"\nnext\n", [(1, b"x" * 8, True), (2, b"next", False)]),
    (b"ok\n" + b"y" * 100 + b"\n\nz\n",
     [(1, b"ok", False), (2, b"y" * 8, True), (4, b"z", False)]),
    (b"12345678", [(1, b"12345678", False)]),
    (b"123456789", [(1, b"12345678", True)]),
    (b"a\n" + b"w" * 50, [(1, b"a", False), (2, b"w" * 8, True)]),
    (b"1234567\r\n", [(1, b"1234567\r", False)]),
    (b"long-one\r\nnext\n", [(1, b"long-one", True), (2, b"next", False)]),
    (b"x" * 20 + b"\n" + b"y" * 20 + b"\n" + b"z\n",
     [(1, b"x" * 8, True), (2, b"y" * 8, True), (3, b"z", False)]),
]


@pytest.mark.parametrize(
    ("content", "expected"), LONG_CASES,
    ids=["exactly-the-limit", "one-over", "far-over", "over-then-blank", "limit-at-eof",
         "over-at-eof", "over-without-newline", "crlf-within-limit", "crlf-over-limit",
         "two-over-in-a-row"],
)
def test_over_long_lines_are_truncated_and_flagged(
    tmp_path: Path, content: bytes, expected: list[tuple[int, bytes, bool]]
) -> None:
    path = write(tmp_path / "in.ndjson", content)
    lines, counts = read([path], max_line_bytes=8)
    assert [(r.line_no, r.data, r.truncated) for r in lines] == expected
    assert counts.bytes_read == len(content)


def test_an_over_long_line_far_beyond_a_mebibyte(tmp_path: Path) -> None:
    content = b"{" + b"a" * (3 << 20) + b"}\n" + b"{}\n"
    path = write(tmp_path / "in.ndjson", content)
    lines, counts = read([path], max_line_bytes=1000)
    assert [(r.line_no, len(r.data), r.truncated) for r in lines] == [(1, 1000, True),
                                                                      (2, 2, False)]
    assert counts.bytes_read == len(content)


# ---- skip ----------------------------------------------------------------------------------

def test_skip_drops_done_lines_and_counts_them(tmp_path: Path) -> None:
    first = write(tmp_path / "a.ndjson", b"a1\na2\n\na4\na5\n")
    second = write(tmp_path / "b.ndjson", b"b1\nb2\n")
    done = {(first, 2), (first, 5), (second, 1), (first, 3)}  # (first, 3) is blank anyway
    asked: list[tuple[str, int]] = []

    def skip(file: str, line_no: int) -> bool:
        asked.append((file, line_no))
        return (file, line_no) in done

    lines, counts = read([first, second], skip=skip)
    assert triples(lines) == [(first, 1, b"a1"), (first, 4, b"a4"), (second, 2, b"b2")]
    assert counts.skipped_done == 3
    assert counts.blank_lines == 1
    assert counts.lines == 7
    assert (first, 3) not in asked  # blank lines never reach the skip test
    assert asked == [(first, 1), (first, 2), (first, 4), (first, 5), (second, 1), (second, 2)]


def test_skip_everything(tmp_path: Path) -> None:
    path = write(tmp_path / "a.ndjson", b"1\n2\n3\n")
    lines, counts = read([path], skip=lambda file, line_no: True)
    assert lines == []
    assert (counts.lines, counts.skipped_done, counts.bytes_read) == (3, 3, 6)


# ---- total_size ----------------------------------------------------------------------------

def test_total_size_of_plain_files(tmp_path: Path) -> None:
    a = write(tmp_path / "a.ndjson", b"x" * 100)
    b = write(tmp_path / "b.ndjson", b"")
    c = write(tmp_path / "c.ndjson", b"y" * 23)
    assert total_size([a, b, c]) == 123
    assert total_size([]) == 0


@pytest.mark.parametrize(
    "names", [["-"], ["a.ndjson", "-"], ["a.ndjson", "z.ndjson.gz"], ["missing.ndjson"]],
    ids=["stdin", "file-and-stdin", "gz", "missing"],
)
def test_total_size_unknown(tmp_path: Path, names: list[str]) -> None:
    write(tmp_path / "a.ndjson", b"abc\n")
    (tmp_path / "z.ndjson.gz").write_bytes(gzip.compress(b"abc\n"))
    paths = [n if n == "-" else str(tmp_path / n) for n in names]
    assert total_size(paths) is None


# ---- ChunkReader ---------------------------------------------------------------------------

async def drain(reader: ChunkReader) -> list[list[RawLine]]:
    chunks: list[list[RawLine]] = []
    while (chunk := await reader.next_chunk()) is not None:
        chunks.append(chunk)
    return chunks


@pytest.mark.parametrize(
    "n_lines", [0, 1, CHUNK_LINES - 1, CHUNK_LINES, 2 * CHUNK_LINES + 7],
    ids=["none", "one", "just-under-a-chunk", "one-chunk", "two-chunks-and-a-bit"],
)
async def test_chunk_reader_delivers_every_line_in_order(tmp_path: Path, n_lines: int) -> None:
    path = write(tmp_path / "in.ndjson", b"".join(b"%d\n" % n for n in range(1, n_lines + 1)))
    counts = ReadCounts()
    reader = ChunkReader(iter_lines([path], max_line_bytes=100, counts=counts), max_chunks=1)
    chunks = await drain(reader)
    assert all(0 < len(chunk) <= CHUNK_LINES for chunk in chunks)
    assert len(chunks) == -(-n_lines // CHUNK_LINES)
    got = [r.line_no for chunk in chunks for r in chunk]
    assert got == list(range(1, n_lines + 1))
    assert all(r.data == b"%d" % r.line_no for chunk in chunks for r in chunk)
    assert counts.lines == n_lines
    reader.stop()


def failing_lines(n_good: int, exc: BaseException) -> Iterator[RawLine]:
    for n in range(1, n_good + 1):
        yield RawLine("in.ndjson", n, b"{}")
    raise exc


@pytest.mark.parametrize(
    ("n_good", "exc"),
    [
        (0, OSError(5, "Input/output error")),
        (3, OSError(5, "Input/output error")),
        (CHUNK_LINES + 3, OSError(5, "Input/output error")),
        (2, EOFError("Compressed file ended before the end-of-stream marker was reached")),
        (2, gzip.BadGzipFile("Not a gzipped file")),
    ],
    ids=["at-once", "after-a-few-lines", "after-a-full-chunk", "eof-error", "bad-gzip"],
)
async def test_chunk_reader_surfaces_read_errors(n_good: int, exc: BaseException) -> None:
    reader = ChunkReader(failing_lines(n_good, exc))
    delivered = 0
    with pytest.raises(type(exc)) as caught:
        while (chunk := await reader.next_chunk()) is not None:
            delivered += len(chunk)
    assert caught.value is exc
    assert delivered == n_good // CHUNK_LINES * CHUNK_LINES  # whole chunks before the error
    reader.stop()


async def test_chunk_reader_surfaces_a_corrupt_gz_file(tmp_path: Path) -> None:
    good = gzip.compress(b"".join(b"%d\n" % n for n in range(10_000)))
    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(good[: len(good) // 2])
    reader = ChunkReader(iter_lines([str(path)], max_line_bytes=100, counts=ReadCounts()))
    with pytest.raises((OSError, EOFError)):
        await drain(reader)
    reader.stop()
