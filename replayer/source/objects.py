"""Inputs in object stores and on the web (s3://, gs://, az://, https://) through fsspec.

Expands globs (in name order), tells an object's identity (version, generation or ETag,
and size) for run.json, and opens an object as a stream that counts the bytes it reads
and refuses to end early. fsspec and the store's package are imported only when a URL is
used, so the base install reads local files without them. Credentials come from each
store's own standard chain (for S3: the AWS environment variables, AWS_ENDPOINT_URL
included, profiles, instance roles); never from flags or the URL's user part. A signed
https URL's query is used to read and nowhere else: messages show the URL without it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from replayer.source.redact import redact_urls, shown_url

# URL scheme -> (fsspec protocol, the extra that installs it).
SCHEMES: dict[str, tuple[str, str]] = {
    "s3": ("s3", "s3"), "gs": ("gcs", "gcs"), "gcs": ("gcs", "gcs"),
    "az": ("az", "azure"), "abfs": ("abfs", "azure"), "https": ("https", "https"),
    "http": ("http", "https"),
}
GLOB_CHARS = frozenset("*?[")
BLOCK_BYTES = 8 << 20  # one ranged GET per block: memory per open object, not per file size
BUFFER_BYTES = 1 << 20  # what the line reader asks the object's stream for at a time
# Keys of fsspec's info() that identify one version of an object, most specific first.
_IDENTITY_KEYS = ("VersionId", "version_id", "generation", "ETag", "etag", "Last-Modified",
                  "last_modified", "LastModified")


class ObjectError(Exception):
    """An object or bucket that cannot be found or read (no such bucket, access denied, ...)."""


class ObjectsUnavailable(Exception):
    """A URL whose store needs an extra that is not installed (a usage error: exit 2)."""


class ShortRead(OSError):
    """An object whose stream ended before its size: never taken as the end of the file."""


class ObjectChanged(OSError):
    """An object replaced while it was read: its bytes so far and the rest are two versions."""


def is_url(path: str) -> bool:
    """Whether `path` names an object store or web input (scheme://...), not a local file."""
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object as the store describes it: its URL, size (None: unknown) and identity."""

    url: str
    size: int | None
    identity: str | None  # e.g. "ETag:\"9b2c...\"" or "generation:1712..."; None: unknown


def _filesystem(url: str) -> Any:
    """The fsspec filesystem for `url` (cached by fsspec per protocol and options)."""
    scheme = url.partition("://")[0].lower()
    protocol, extra = SCHEMES[scheme]
    hint = f"reading {scheme}:// inputs needs an extra: pip install 'replayer[{extra}]'"
    try:
        import fsspec
    except ImportError:
        raise ObjectsUnavailable(hint) from None
    try:
        return fsspec.filesystem(protocol)
    except (ImportError, ValueError) as exc:  # fsspec says which package is missing
        raise ObjectsUnavailable(f"{hint} ({exc})") from None


def _refuse_credentials(url: str) -> None:
    netloc = url.partition("://")[2].partition("/")[0]
    if "@" in netloc:
        raise ObjectError(f"{shown_url(url.split('@')[-1])}: credentials in a URL are refused "
                          "(they would show in rows and process lists); use the store's own "
                          "credential chain or a signed URL")


def _failure(url: str, exc: BaseException) -> ObjectError:
    """One clear sentence for what the store said about `url` (its query cut off)."""
    url = shown_url(url)
    if isinstance(exc, FileNotFoundError):
        what = str(exc.args[-1] if exc.args else "")
        for where in ("bucket", "container"):
            if where in what.lower():
                return ObjectError(f"{url}: no such {where} (or no access to it)")
        if url.partition("://")[0].lower() in ("http", "https"):  # fsspec says 404 for a 403
            return ObjectError(f"{url}: no such object, or access denied (a signed URL may "
                               "have expired: sign it afresh)")
        return ObjectError(f"{url}: no such object")
    if isinstance(exc, PermissionError):
        return ObjectError(f"{url}: access denied (check the store's credentials and policy)")
    return ObjectError(f"{url}: cannot be read: {redact_urls(str(exc)) or type(exc).__name__}")


def _call(url: str, what: Callable[[], Any]) -> Any:
    """`what()`, with anything the store's client raises turned into an ObjectError."""
    try:
        return what()
    except (ObjectsUnavailable, ObjectError):
        raise
    except Exception as exc:  # noqa: BLE001 - a third-party boundary: s3fs, gcsfs, adlfs, aiohttp
        raise _failure(url, exc) from None


def _full_url(scheme: str, path: str) -> str:
    return path if "://" in path else f"{scheme}://{path}"


def info_of(url: str, details: dict[str, Any]) -> ObjectInfo:
    """An ObjectInfo from fsspec's description of one object."""
    size = details.get("size")
    identity = next((f"{k}:{details[k]}" for k in _IDENTITY_KEYS if details.get(k)), None)
    return ObjectInfo(url, size if isinstance(size, int) else None, identity)


def stat(url: str) -> ObjectInfo:
    """The object at `url` (ObjectError if it is missing, unreadable or a folder)."""
    return info_of(url, _details(url))


def _details(url: str) -> dict[str, Any]:
    _refuse_credentials(url)
    fs = _filesystem(url)
    details: dict[str, Any] = _call(url, lambda: fs.info(url))
    if details.get("type") == "directory":
        shown = shown_url(url)
        raise ObjectError(f"{shown}: a folder (prefix), not an object; give a glob such as "
                          f"{shown.rstrip('/')}/*.gz")
    return details


def pin_headers(url: str, details: dict[str, Any]) -> dict[str, str]:
    """For an http(s) object, the conditions that make every ranged read of it fail (412)
    once it is no longer the version `details` describe: its strong ETag, else its
    Last-Modified. (s3fs pins an S3 object by its ETag itself.)"""
    if url.partition("://")[0].lower() not in ("http", "https"):
        return {}
    etag = details.get("ETag") or details.get("etag")
    if isinstance(etag, str) and etag.startswith('"'):  # a weak W/"..." never matches If-Match
        return {"If-Match": etag}
    modified = details.get("Last-Modified")
    return {"If-Unmodified-Since": modified} if isinstance(modified, str) else {}


def expand(url: str, *, suffixes: Sequence[str] = ()) -> list[ObjectInfo]:
    """The objects `url` names, in name order: a glob's matches, the object itself, or (with
    `suffixes`, for convert) the objects under a folder whose names end so.

    A key may hold `*`, `?`, `[` or `]`: an object whose name is exactly `url` is that
    object, never a glob (which might match others, or not even itself)."""
    _refuse_credentials(url)
    fs = _filesystem(url)
    scheme = url.partition("://")[0]
    if GLOB_CHARS & set(shown_url(url).partition("://")[2]):  # an https query is no glob
        exact = _exact(fs, url)
        if exact is not None:
            return [exact]
        found: dict[str, Any] = _call(url, lambda: fs.glob(url, detail=True))
        objects = [info_of(_full_url(scheme, p), d) for p, d in found.items()
                   if d.get("type") != "directory"]
        if not objects:
            _check_root(fs, url)
            raise ObjectError(f"{shown_url(url)}: no object matches")
        return sorted(objects, key=lambda o: o.url)
    details = _call(url, lambda: fs.info(url))
    if details.get("type") != "directory":
        return [info_of(url, details)]
    if not suffixes:
        return [stat(url)]  # refuses the folder with a hint
    under: dict[str, Any] = _call(url, lambda: fs.find(url, detail=True))
    objects = [info_of(_full_url(scheme, p), d) for p, d in under.items()
               if p.endswith(tuple(suffixes))]
    if not objects:
        raise ObjectError(f"{shown_url(url)}: no export objects ({', '.join(suffixes)})")
    return sorted(objects, key=lambda o: o.url)


def _exact(fs: Any, url: str) -> ObjectInfo | None:
    """The object named exactly `url`, or None (no such object: `url` is a glob then)."""
    try:
        details = fs.info(url)
    except Exception:  # noqa: BLE001 - any answer but an object's: the glob says what is wrong
        return None
    return None if details.get("type") == "directory" else info_of(url, details)


def _check_root(fs: Any, url: str) -> None:
    """Tells a missing bucket (or container) from a glob that matched nothing in it."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() in ("http", "https"):
        return
    root = f"{scheme}://{rest.partition('/')[0]}"
    if not _call(root, lambda: fs.exists(root)):
        raise ObjectError(f"{root}: no such bucket (or no access to it)")


def _changed(exc: BaseException) -> bool:
    """Whether a read failed because the object is no longer the version it started as:
    a 412 to the conditions of pin_headers (https), or s3fs's FileExpired (its IfMatch)."""
    return getattr(exc, "status", None) == 412 or type(exc).__name__ == "FileExpired"


class ObjectStream(io.RawIOBase):
    """An object's bytes, counted as they arrive; ends only when all `size` bytes came.

    A read the store's client could not complete after its own retries is an OSError
    (the run stops with exit 4 and can resume); so is a stream that ends short. At the end,
    `identity()` (if given) must still be the object's: a server that ignores the pin of
    pin_headers may have served two versions (ObjectChanged).
    """

    def __init__(self, info: ObjectInfo, raw: Any, on_bytes: Callable[[int], None], *,
                 identity: Callable[[], str | None] | None = None) -> None:
        super().__init__()
        self._info = info
        self._raw = raw
        self._on_bytes = on_bytes
        self._identity = identity
        self.bytes_read = 0

    def readable(self) -> bool:
        """Always: an input is read only."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fills `buffer` from the object; 0 only at its true end."""
        view = memoryview(buffer).cast("B")
        try:
            data = self._raw.read(len(view))
        except Exception as exc:  # noqa: BLE001 - a third-party boundary, as in _call
            if _changed(exc):
                raise ObjectChanged(
                    f"{shown_url(self._info.url)}: the object changed while it was read "
                    f"(after {self.bytes_read} bytes); its rows so far are of the earlier "
                    "version, and a resume is refused: start a new --out") from None
            raise OSError(f"{shown_url(self._info.url)}: reading failed after {self.bytes_read} "
                          f"bytes: {redact_urls(str(exc)) or type(exc).__name__}") from None
        n = len(data)
        view[:n] = data
        self.bytes_read += n
        self._on_bytes(n)
        size = self._info.size
        if n == 0 and len(view) and size is not None and self.bytes_read < size:
            raise ShortRead(f"{shown_url(self._info.url)}: the store ended the object after "
                            f"{self.bytes_read} of its {size} bytes")
        if n == 0 and len(view) and self._identity is not None:
            self._check_identity(self._identity)
        return n

    def _check_identity(self, identity: Callable[[], str | None]) -> None:
        self._identity = None  # once, at the first end
        try:
            now = identity()
        except (ObjectError, ObjectsUnavailable) as exc:
            raise OSError(str(exc)) from None
        if now != self._info.identity:
            raise ObjectChanged(f"{shown_url(self._info.url)}: the object changed while it "
                                "was read (the server ignored the conditions that pin it); "
                                "its rows are of two versions, and a resume is refused: "
                                "start a new --out")

    def close(self) -> None:
        """Closes the object's stream."""
        if not self.closed:
            self._raw.close()
        super().close()


def open_object(url: str, *, on_bytes: Callable[[int], None] = lambda _n: None) -> BinaryIO:
    """A buffered binary stream of the object at `url` (compressed bytes as stored).

    `on_bytes(n)` is told each block of stored bytes as it arrives (for progress).
    """
    details = _details(url)
    info = info_of(url, details)
    fs = _filesystem(url)
    pin = pin_headers(url, details)
    options: dict[str, Any] = {"headers": pin, "size": info.size} if pin else {}
    raw = _call(url, lambda: fs.open(url, "rb", block_size=BLOCK_BYTES, **options))
    # A web server may ignore If-Match: one more HEAD at the end tells what it served.
    identity = (lambda: stat(url).identity) if pin else None
    return io.BufferedReader(ObjectStream(info, raw, on_bytes, identity=identity),
                             BUFFER_BYTES)


def seekable_object(url: str) -> BinaryIO:
    """The object at `url` as a seekable file (for zip archives, whose index is at the end)."""
    _refuse_credentials(url)
    fs = _filesystem(url)
    return _call(url, lambda: fs.open(url, "rb", block_size=BLOCK_BYTES))  # type: ignore[no-any-return]


def edges_digest(url: str, *, edge_bytes: int) -> tuple[int, str]:
    """(size, sha256 of the first and last `edge_bytes`) of an object with no identity."""
    import hashlib

    fs = _filesystem(url)

    def digest() -> tuple[int, str]:
        h = hashlib.sha256()
        with fs.open(url, "rb", block_size=edge_bytes) as f:
            size = f.size
            h.update(f.read(edge_bytes))
            if size is not None and size > edge_bytes:
                f.seek(max(edge_bytes, size - edge_bytes))
                h.update(f.read(edge_bytes))
        return int(size or 0), h.hexdigest()

    return _call(url, digest)  # type: ignore[no-any-return]
