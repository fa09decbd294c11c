"""https inputs: a signed URL's query never leaves the reader; an object that changes while
it is read stops the run. Served by tests/http_store.py (aiohttp on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from replayer.output.layout import FAILURES, RESULTS, SUMMARY
from replayer.source.generate import write_records
from replayer.source.redact import redact_urls, shown_url
from tests.conftest import read_rows
from tests.http_store import http_store

pytest.importorskip("fsspec")

# Every credential a signed URL may carry; none of them may show anywhere.
SECRETS = ("AKIA-SECRET-CRED", "AMZ-SECRET-SIG", "GOOG-SECRET-SIG", "SAS-SECRET-SIG",
           "TOKEN-SECRET", "sv=2024", "se=2031", "sp=r")


def signed(url: str, sig: str) -> str:
    return (f"{url}?X-Amz-Credential=AKIA-SECRET-CRED&X-Amz-Signature=AMZ-SECRET-SIG-{sig}"
            f"&X-Goog-Signature=GOOG-SECRET-SIG&sv=2024&se=2031&sp=r&sig={sig}"
            "&token=TOKEN-SECRET")


def records(count: int, *, seed: int, invalid: int = 0) -> bytes:
    buffer = io.BytesIO()
    write_records(buffer, records=count, users=max(1, count // 10), seed=seed)
    return buffer.getvalue() + b"not json\n" * invalid


async def spawn(*args: str, block_bytes: int | None = None) -> asyncio.subprocess.Process:
    # Reads in small blocks when asked, so that a small object takes many ranged reads.
    patch = (f"objects.BLOCK_BYTES = objects.BUFFER_BYTES = {block_bytes}; " if block_bytes
             else "")
    code = ("import sys; from replayer.source import objects; " + patch +
            "from replayer.cli import main; sys.argv[0] = 'replayer'; main()")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEANPLUM")}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, stdout.decode(), stderr.decode()


async def replayer(*args: str, block_bytes: int | None = None) -> tuple[int, str, str]:
    return await finish(await spawn(*args, block_bytes=block_bytes))


def assert_no_secret(*texts: str, folder: Path | None = None) -> None:
    files = {str(p): p.read_bytes().decode(errors="replace")
             for p in (folder.rglob("*") if folder else ()) if p.is_file()}
    for where, text in [*enumerate(texts), *files.items()]:
        for secret in SECRETS:
            assert secret not in text, f"{secret} leaked into {where}"


async def test_a_signed_url_is_read_but_its_query_is_shown_nowhere_and_resumes_signed_afresh(
    tmp_path: Path,
) -> None:
    body = gzip.compress(records(400, seed=1, invalid=3), mtime=0)
    async with http_store({"in/part.ndjson.gz": body}, signature="one") as store:
        out = tmp_path / "out"
        run = ("--out", str(out), "--workers", "2", "--rate", "100", "--no-batch", "--log-format", "json",
               "--log-level", "debug")
        proc = await spawn("run", signed(store.url("in/part.ndjson.gz"), "one"), *run)
        async with asyncio.timeout(30):
            while not any(p.stat().st_size > 0 for p in out.rglob(RESULTS)):
                await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        code, stdout, stderr = await finish(proc)
        assert code == 130, stderr
        assert_no_secret(stdout, stderr, folder=out)
        summary = orjson.loads((out / SUMMARY).read_bytes())
        name = store.url("in/part.ndjson.gz")
        assert summary["inputs"] == [name]
        assert summary["resume_with"].startswith(f"replayer run {name} --out")
        assert "freshly signed URL" in summary["resume_with"]

        store.signature = "two"  # the first signature expired; the object is the same
        code, stdout, stderr = await replayer(
            "run", signed(store.url("in/part.ndjson.gz"), "two"), *run, "--resume")
        assert code == 1, stderr  # the three lines that are not JSON failed
        assert_no_secret(stdout, stderr, folder=out)
        rows = read_rows(out / RESULTS) + read_rows(out / FAILURES)
        keys = Counter((r["file"], r["line"]) for r in rows)
        assert set(keys) == {(name, n) for n in range(1, 404)}
        assert max(keys.values()) == 1
        summary = orjson.loads((out / SUMMARY).read_bytes())
        assert summary["resumed"]["lines_already_done"] > 0

        code, stdout, stderr = await replayer("report", str(out))
        assert code == 0, stderr
        assert_no_secret(stdout, stderr, folder=out)
        code, stdout, stderr = await replayer("validate",
                                              signed(store.url("in/part.ndjson.gz"), "two"))
        assert code == 1, stderr
        assert f"{name}:401: invalid_json" in stdout
        assert_no_secret(stdout, stderr)
        assert any("sig=two" in r for r in store.requests), "the signature was used to read"


@pytest.mark.parametrize(("path", "says"), [
    ("in/missing.ndjson", "no such object"), ("in/part.ndjson", "signed URL may have expired"),
], ids=["missing", "signature-refused"])
async def test_an_unreadable_signed_url_is_one_line_without_its_query(
    tmp_path: Path, path: str, says: str
) -> None:
    async with http_store({"in/part.ndjson": records(5, seed=1)}, signature="good") as store:
        sig = "good" if path.endswith("missing.ndjson") else "expired"
        for command in (["run", "--out", str(tmp_path / "out")], ["validate"]):
            code, stdout, stderr = await replayer(command[0], signed(store.url(path), sig),
                                                  *command[1:])
            assert code == 4, stderr
            assert says in stderr and store.url(path) in stderr
            assert len(stderr.strip().splitlines()) == 1, stderr
            assert "Traceback" not in stderr + stdout
            assert_no_secret(stdout, stderr)


async def test_workers_get_their_inputs_over_the_pipe_not_on_argv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from replayer.config import Settings
    from replayer.output.runfile import RunRecord
    from replayer.workers import parent
    from replayer.workers.handoff import Handoff

    url = signed("https://store.invalid/in/part.ndjson", "one")
    spawned: list[str] = []

    async def exec_(*args: object, env: dict[str, str], **_kw: object) -> None:
        spawned.extend([*map(str, args), *env.values()])  # argv and environment, as in /proc

    monkeypatch.setattr(asyncio, "create_subprocess_exec", exec_)
    record = RunRecord(state="running", endpoint="embedded", dry_run=False, loop=False,
                       inputs=None)
    handoff = Handoff(Settings(), record, (url,))
    await parent._spawn(0, 2, tmp_path, {"PATH": "/bin"}, handoff, resume=False)

    assert spawned and not any(url in a or "SECRET" in a for a in spawned)
    assert Handoff.decode(handoff.encode()).paths == (url,)


@pytest.mark.parametrize(("path", "shown"), [
    ("https://h/a/b.ndjson.gz?X-Amz-Signature=s&X-Amz-Credential=c", "https://h/a/b.ndjson.gz"),
    ("HTTP://h/x?sig=s#frag", "HTTP://h/x"),
    ("https://h/x#a?b", "https://h/x"),
    ("https://h/x", "https://h/x"),
    ("s3://b/what?.ndjson", "s3://b/what?.ndjson"),  # no query in an object store's key
    ("local?.ndjson", "local?.ndjson"),
], ids=lambda v: str(v))
def test_shown_url_cuts_an_https_query(path: str, shown: str) -> None:
    assert shown_url(path) == shown


def test_redact_urls_cuts_the_query_of_every_url_in_a_message() -> None:
    text = ("412, message='Precondition Failed', url='https://h:1/x.ndjson?sig=s&sv=1' "
            "see http://h/y?token=t; retried")
    assert redact_urls(text) == ("412, message='Precondition Failed', url='https://h:1/x.ndjson' "
                                 "see http://h/y retried")


async def test_an_object_replaced_while_it_is_read_stops_the_run_and_its_resume_is_refused(
    tmp_path: Path,
) -> None:
    first, second = records(300, seed=1), records(300, seed=2)
    async with http_store({"in/part.ndjson": first}) as store:
        stored = store.objects["in/part.ndjson"]
        stored.swap_to, stored.swap_after = second, 2  # replaced after its second block
        out = tmp_path / "out"
        run = ("run", store.url("in/part.ndjson"), "--out", str(out), "--workers", "1")

        code, stdout, stderr = await replayer(*run, block_bytes=4096)

        assert code == 4, stderr
        assert f"{store.url('in/part.ndjson')}: the object changed while it was read" in stderr
        assert "Traceback" not in stderr + stdout
        assert stored.ranged_reads == 2, "nothing was read from the new version"
        rows = read_rows(out / RESULTS) + read_rows(out / FAILURES)
        assert len(rows) < 300 and not read_rows(out / FAILURES)

        code, stdout, stderr = await replayer(*run, "--resume", block_bytes=4096)

        assert code == 2, stderr
        assert f"{store.url('in/part.ndjson')} changed since" in stderr
        assert "Traceback" not in stderr + stdout


async def test_a_server_that_ignores_the_pin_still_cannot_end_a_mixed_read_with_success(
    tmp_path: Path,
) -> None:
    async with http_store({"in/part.ndjson": records(300, seed=1)}) as store:
        stored = store.objects["in/part.ndjson"]
        stored.swap_to, stored.swap_after, stored.pinnable = records(300, seed=2), 2, False
        out = tmp_path / "out"

        code, stdout, stderr = await replayer("run", store.url("in/part.ndjson"), "--out",
                                              str(out), "--workers", "1", block_bytes=4096)

        assert code == 4, stderr
        assert "the object changed while it was read (the server ignored" in stderr
        assert "Traceback" not in stderr + stdout


@pytest.mark.parametrize(("details", "pin"), [
    ({"ETag": '"e1"', "Last-Modified": "Mon, 07 Dec 2026 03:00:00 GMT"}, {"If-Match": '"e1"'}),
    ({"ETag": 'W/"e1"', "Last-Modified": "Mon, 07 Dec 2026 03:00:00 GMT"},
     {"If-Unmodified-Since": "Mon, 07 Dec 2026 03:00:00 GMT"}),
    ({"size": 3}, {}),
], ids=["strong-etag", "weak-etag", "neither"])
def test_an_https_object_is_pinned_by_its_strong_etag_else_its_date(
    details: dict[str, object], pin: dict[str, str]
) -> None:
    from replayer.source.objects import pin_headers

    assert pin_headers("https://h/x", details) == pin
    assert pin_headers("s3://b/x", details) == {}  # s3fs pins S3 reads itself


async def test_convert_reads_a_signed_url_and_names_it_without_its_query(tmp_path: Path) -> None:
    sample = min((Path(__file__).parent.parent / "samples" / "exports" / "segment").rglob("*.gz"))
    async with http_store({"seg/part.json.gz": sample.read_bytes()}, signature="one") as store:
        output = tmp_path / "converted.ndjson"
        code, stdout, stderr = await replayer(
            "convert", "--from", "segment", signed(store.url("seg/part.json.gz"), "one"),
            "-o", str(output))
        assert code in (0, 1), stderr  # 1: the samples hold events that must be rejected
        assert output.stat().st_size > 0
        assert store.url("seg/part.json.gz") in (stdout + stderr + "".join(
            p.read_text() for p in tmp_path.iterdir()))
        assert_no_secret(stdout, stderr, folder=tmp_path)
