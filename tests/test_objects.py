"""Inputs in object stores: S3 end to end against moto in server mode on 127.0.0.1.

The AWS settings (AWS_ENDPOINT_URL, test credentials) go only into the replayer
subprocesses' environment; this process uploads with an explicitly configured client.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from replayer.output.layout import FAILURES, METRICS, RESULTS, RUN, SUMMARY
from replayer.output.runfile import InputPrint, RunRecord
from replayer.source import objects
from replayer.source.generate import write_records
from replayer.source.objects import ObjectInfo, ObjectStream, ShortRead, is_url
from tests.conftest import read_rows

if os.environ.get("CI") == "true":  # the test extra installs them: missing is a failure
    import boto3
    import moto.server as moto_server
    import s3fs  # noqa: F401
else:
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples" / "exports"


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """A moto S3 server on a free loopback port; yields the environment that points at it."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    yield env
    server.stop()


def client(env: dict[str, str]) -> Any:
    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def records_gz(records: int, *, seed: int) -> bytes:
    buffer = io.BytesIO()
    write_records(buffer, records=records, users=max(1, records // 10), seed=seed)
    return gzip.compress(buffer.getvalue(), mtime=0)


def upload(env: dict[str, str], bucket: str, objects_: dict[str, bytes]) -> None:
    s3 = client(env)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        s3.create_bucket(Bucket=bucket)
    for key, body in objects_.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)


def child_env(env: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**base, **env, "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


async def spawn(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "replayer", *args, env=child_env(env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, stdout.decode(), stderr.decode()


async def replayer(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    return await finish(await spawn(env, *args))


def lines_of(body: bytes) -> int:
    return sum(1 for line in gzip.decompress(body).splitlines() if line.strip())


def row_keys(out: Path) -> Counter[tuple[str, int]]:
    rows = read_rows(out / RESULTS) + read_rows(out / FAILURES)
    return Counter((r["file"], r["line"]) for r in rows)


async def test_s3_glob_run_survives_sigkill_and_resume_gives_one_row_per_line(
    s3: dict[str, str], tmp_path: Path
) -> None:
    bodies = {f"pre/part-{i}.ndjson.gz": records_gz(1000, seed=i) for i in range(3)}
    upload(s3, "kill", {**bodies, "pre/skip.txt": b"not matched by the glob\n"})
    out = tmp_path / "out"
    run = ("run", "s3://kill/pre/*.gz", "--out", str(out), "--rate", "1200", "--workers", "2",
           "--concurrency", "8")
    proc = await spawn(s3, *run)
    async with asyncio.timeout(30):
        while not any(p.stat().st_size > 0 for p in out.rglob(RESULTS)):
            await asyncio.sleep(0.02)
    proc.kill()
    await proc.wait()
    assert not (out / SUMMARY).exists(), "killed mid-run, before it could finish"

    code, _stdout, stderr = await replayer(s3, *run, "--resume")

    assert code == 0, stderr
    expected = {(f"s3://kill/{key}", n) for key, body in bodies.items()
                for n in range(1, lines_of(body) + 1)}
    keys = row_keys(out)
    assert set(keys) == expected
    assert max(keys.values()) == 1, "no line has two rows"
    summary = orjson.loads((out / SUMMARY).read_bytes())
    assert summary["resumed"]["lines_already_done"] > 0
    inputs = orjson.loads((out / RUN).read_bytes())["inputs"]
    assert [i["file"] for i in inputs] == sorted(f"s3://kill/{k}" for k in bodies)
    assert all(i["identity"].startswith("ETag:") for i in inputs)
    assert [i["size"] for i in inputs] == [len(bodies[k]) for k in sorted(bodies)]


async def test_single_run_from_s3_counts_stored_bytes_for_progress(
    s3: dict[str, str], tmp_path: Path
) -> None:
    bodies = {"a/1.ndjson.gz": records_gz(300, seed=7), "a/2.ndjson.gz": records_gz(200, seed=8)}
    upload(s3, "progress", bodies)
    out = tmp_path / "out"
    code, _stdout, stderr = await replayer(s3, "run", "s3://progress/a/*.gz", "--out", str(out),
                                           "--workers", "1")
    assert code == 0, stderr
    assert len(row_keys(out)) == 500
    last = read_rows(out / METRICS)[-1]
    total = sum(len(b) for b in bodies.values())
    assert (last["bytes_read"], last["bytes_total"]) == (total, total)


async def test_changed_object_is_refused_on_resume(s3: dict[str, str], tmp_path: Path) -> None:
    upload(s3, "changed", {"in/a.ndjson.gz": records_gz(50, seed=1),
                           "in/b.ndjson.gz": records_gz(50, seed=2)})
    out = tmp_path / "out"
    run = ("run", "s3://changed/in/*.gz", "--out", str(out), "--workers", "1")
    code, _stdout, stderr = await replayer(s3, *run)
    assert code == 0, stderr
    upload(s3, "changed", {"in/b.ndjson.gz": records_gz(50, seed=3)})

    code, _stdout, stderr = await replayer(s3, *run, "--resume")

    assert code == 2, stderr
    assert "s3://changed/in/b.ndjson.gz changed" in stderr
    assert "s3://changed/in/a.ndjson.gz changed" not in stderr


@pytest.mark.parametrize("command", [
    ["run", "--workers", "1"], ["validate"], ["convert", "--from", "segment", "-o", "x.ndjson"],
], ids=["run", "validate", "convert"])
@pytest.mark.parametrize(("url", "says"), [
    ("s3://no-such-bucket/pre/*.gz", "s3://no-such-bucket: no such bucket"),
    ("s3://no-such-bucket/a.ndjson.gz", "no such bucket"),
    ("s3://present/missing.ndjson.gz", "s3://present/missing.ndjson.gz: no such object"),
    ("s3://present/none/*.gz", "s3://present/none/*.gz: no object matches"),
], ids=["bucket-glob", "bucket-object", "object", "no-match"])
async def test_missing_bucket_or_object_is_an_input_error_in_one_line(
    s3: dict[str, str], tmp_path: Path, command: list[str], url: str, says: str
) -> None:
    upload(s3, "present", {"other.ndjson.gz": records_gz(5, seed=1)})
    args = [command[0], url, *command[1:]]
    if command[0] == "run":
        args += ["--out", str(tmp_path / "out")]
    if command[0] == "convert":
        args[args.index("x.ndjson")] = str(tmp_path / "x.ndjson")

    code, stdout, stderr = await replayer(s3, *args)

    assert code == 4, stderr
    assert says in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "Traceback" not in stderr + stdout


async def test_validate_and_convert_read_s3_urls(s3: dict[str, str], tmp_path: Path) -> None:
    segment = sorted((SAMPLES / "segment").rglob("*.gz"))
    upload(s3, "exports", {
        "sessions.ndjson": (ROOT / "samples" / "sessions.ndjson").read_bytes(),
        **{f"segment/{p.parent.name}/{p.name}": p.read_bytes() for p in segment}})

    code, stdout, stderr = await replayer(s3, "validate", "s3://exports/sessions.ndjson")
    local = await replayer(s3, "validate", str(ROOT / "samples" / "sessions.ndjson"))
    assert code == local[0], stderr
    assert stdout.replace("s3://exports/sessions.ndjson", "F") == local[1].replace(
        str(ROOT / "samples" / "sessions.ndjson"), "F")

    from_s3, from_disk = tmp_path / "s3.ndjson", tmp_path / "disk.ndjson"
    code, _stdout, stderr = await replayer(s3, "convert", "--from", "segment",
                                           "s3://exports/segment/", "-o", str(from_s3))
    disk = await replayer(s3, "convert", "--from", "segment", str(SAMPLES / "segment"),
                          "-o", str(from_disk))
    assert (code, disk[0]) == (1, 1), stderr  # the samples hold events that must be rejected
    assert from_s3.read_bytes() == from_disk.read_bytes()
    rejects = (tmp_path / "s3.ndjson.rejects.ndjson").read_text()
    assert "s3://exports/segment/" in rejects


# ---- without a server ---------------------------------------------------------------------


def test_an_s3_object_replaced_while_it_is_read_is_refused_not_mixed(
    s3: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = gzip.decompress(records_gz(400, seed=1))
    upload(s3, "swap", {"k.ndjson": first})
    for name, value in child_env(s3).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(objects, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(objects, "BUFFER_BYTES", 4096)
    stream = objects.open_object("s3://swap/k.ndjson")
    assert stream.readline() == first.splitlines(keepends=True)[0]
    upload(s3, "swap", {"k.ndjson": gzip.decompress(records_gz(400, seed=2))})
    with pytest.raises(objects.ObjectChanged, match="s3://swap/k.ndjson: the object changed"):
        stream.read()


@pytest.mark.parametrize(("path", "url"), [
    ("s3://b/k.gz", True), ("gs://b/k", True), ("az://c/k", True), ("https://h/x.ndjson", True),
    ("S3://b/k", True), ("sessions.ndjson", False), ("-", False), ("ftp://h/x", False),
    ("./s3:/x", False),
], ids=lambda v: str(v))
def test_is_url(path: str, url: bool) -> None:
    assert is_url(path) is url


def test_run_json_keeps_local_prints_and_adds_object_identity() -> None:
    local = InputPrint("in.ndjson", 10, "ab")
    remote = InputPrint("s3://b/k.gz", 10, "", 'ETag:"e1"')
    assert local.to_doc() == {"file": "in.ndjson", "size": 10, "sha256_edges": "ab"}
    record = RunRecord(state="running", endpoint="embedded", dry_run=False, loop=False,
                       inputs=(local, remote))
    assert RunRecord.decode(record.encode(), path="run.json").inputs == (local, remote)


class Raw:
    """An object stream that hands out `data` then fails or ends, as a store's client might."""

    def __init__(self, data: bytes, *, then: BaseException | None = None) -> None:
        self._data = data
        self._then = then

    def read(self, n: int) -> bytes:
        if not self._data and self._then is not None:
            raise self._then
        chunk, self._data = self._data[:n], self._data[n:]
        return chunk

    def close(self) -> None:
        return None


def test_a_short_read_is_never_the_end_of_the_object() -> None:
    seen: list[int] = []
    stream = io.BufferedReader(ObjectStream(ObjectInfo("s3://b/k", 10, "e"), Raw(b"abc\n"),
                                            seen.append))
    assert stream.readline() == b"abc\n"
    with pytest.raises(ShortRead, match="after 4 of its 10 bytes"):
        stream.readline()
    assert sum(seen) == 4


def test_a_whole_object_ends_and_a_failed_read_is_an_os_error() -> None:
    whole = io.BufferedReader(ObjectStream(ObjectInfo("s3://b/k", 4, "e"), Raw(b"abc\n"),
                                           lambda _n: None))
    assert whole.read() == b"abc\n"
    failing = io.BufferedReader(ObjectStream(ObjectInfo("s3://b/k", 9, "e"),
                                             Raw(b"ab", then=RuntimeError("payload")),
                                             lambda _n: None))
    with pytest.raises(OSError, match="s3://b/k: reading failed after 2 bytes: payload"):
        failing.read()


@pytest.mark.parametrize("error", [
    pytest.param(lambda: __import__("s3fs.utils").utils.FileExpired("b/k", '"e"'), id="s3"),
    pytest.param(lambda: type("ClientResponseError", (Exception,), {"status": 412})(), id="412"),
])
def test_an_object_that_changed_while_read_is_said_so(error: Any) -> None:
    changed = io.BufferedReader(ObjectStream(ObjectInfo("s3://b/k", 9, "e"),
                                             Raw(b"ab\n", then=error()), lambda _n: None))
    assert changed.readline() == b"ab\n"
    with pytest.raises(objects.ObjectChanged, match="s3://b/k: the object changed while it "
                       "was read \\(after 3 bytes\\)"):
        changed.read()


def test_a_missing_extra_names_the_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fsspec", None)  # as if the extra were not installed
    with pytest.raises(objects.ObjectsUnavailable, match=r"pip install 'replayer\[s3\]'"):
        objects.stat("s3://b/k")


def test_credentials_in_a_url_are_refused_without_repeating_them() -> None:
    with pytest.raises(objects.ObjectError, match="credentials in a URL") as caught:
        objects.stat("https://user:hunter2@example.invalid/x.ndjson")
    assert "hunter2" not in str(caught.value)


class FakeStore:
    """An fsspec filesystem stand-in holding one object whose reads end early."""

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size = data, size

    def info(self, url: str) -> dict[str, Any]:
        return {"type": "file", "size": self.size, "ETag": '"e"'}

    def open(self, url: str, mode: str, **_kw: Any) -> Raw:
        return Raw(self.data)


def test_reading_an_object_that_ends_early_raises_for_the_run_to_stop_with_exit_4(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from replayer.source.read import ReadCounts, iter_lines, total_size

    store = FakeStore(b'{"userId":"u1"}\n{"userId":"u2"}\n', size=100)
    monkeypatch.setattr(objects, "_filesystem", lambda _url: store)
    counts = ReadCounts()
    lines = iter_lines(["s3://b/k.ndjson"], max_line_bytes=1024, counts=counts)
    assert next(lines).data == b'{"userId":"u1"}'
    with pytest.raises(OSError, match="after 32 of its 100 bytes"):
        list(lines)  # the engine's intake turns an OSError into exit 4 (resumable)
    assert counts.bytes_read == 32
    assert total_size(["s3://b/k.ndjson", "s3://b/k2.ndjson"]) == 200


async def test_a_key_with_glob_characters_that_exists_is_that_object_not_a_glob(
    s3: dict[str, str], tmp_path: Path
) -> None:
    bodies = {"lit/a[1].ndjson.gz": records_gz(5, seed=1), "lit/a1.ndjson.gz": records_gz(7, seed=2),
              "lit/what?.ndjson.gz": records_gz(3, seed=3), "lit/star*.ndjson.gz":
              records_gz(4, seed=4), "lit/starX.ndjson.gz": records_gz(6, seed=5)}
    upload(s3, "literal", bodies)
    for key in ("lit/a[1].ndjson.gz", "lit/what?.ndjson.gz", "lit/star*.ndjson.gz"):
        code, stdout, stderr = await replayer(s3, "validate", f"s3://literal/{key}")
        assert code == 0, stderr
        assert stdout.startswith(f"{lines_of(bodies[key])} lines (0 blank)"), (key, stdout)
    code, stdout, stderr = await replayer(s3, "validate", "s3://literal/lit/a[0-9].ndjson.gz")
    assert (code, stdout.split(" lines")[0]) == (0, "7"), stderr  # no such key: a glob

    out = tmp_path / "out"
    code, _stdout, stderr = await replayer(s3, "run", "s3://literal/lit/a[1].ndjson.gz",
                                           "--out", str(out), "--workers", "1")
    assert code == 0, stderr
    assert set(row_keys(out)) == {("s3://literal/lit/a[1].ndjson.gz", n) for n in range(1, 6)}
