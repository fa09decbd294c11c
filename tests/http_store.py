"""An https-like object store for tests: aiohttp on 127.0.0.1 serving ranged reads.

Each object has a strong ETag and a Last-Modified; GET honours Range, If-Match,
If-Unmodified-Since and If-Range as a web server or a store's signed URL does.
`signature` (if set) must be in every request's query, as a signed URL's would be.
A test may swap an object's bytes after its n-th ranged read (`swap_after`).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import formatdate

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass(slots=True)
class Stored:
    """One object: its bytes, and what to swap them for after `swap_after` ranged reads."""

    body: bytes
    modified_s: float = 1_700_000_000.0
    swap_to: bytes | None = None
    swap_after: int = 0
    ranged_reads: int = 0
    pinnable: bool = True  # False: If-Match and If-Unmodified-Since are ignored, as some do

    @property
    def etag(self) -> str:
        return '"' + hashlib.md5(self.body).hexdigest() + '"'

    @property
    def last_modified(self) -> str:
        return formatdate(self.modified_s, usegmt=True)


@dataclass(slots=True)
class HttpStore:
    """The store's objects by path, and every request's URL (query included) as it came."""

    objects: dict[str, Stored] = field(default_factory=dict)
    signature: str | None = None
    requests: list[str] = field(default_factory=list)
    base: str = ""

    def url(self, path: str, query: str = "") -> str:
        return f"{self.base}/{path}" + (f"?{query}" if query else "")

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(str(request.rel_url))
        if self.signature is not None and request.query.get("sig") != self.signature:
            return web.Response(status=403, text="bad signature")
        stored = self.objects.get(request.match_info["path"])
        if stored is None:
            return web.Response(status=404)
        headers = {"ETag": stored.etag, "Last-Modified": stored.last_modified,
                   "Accept-Ranges": "bytes"}
        if_match = request.headers.get("If-Match")
        if stored.pinnable and if_match is not None and if_match not in ("*", stored.etag):
            return web.Response(status=412, headers=headers)
        since = request.headers.get("If-Unmodified-Since")
        if stored.pinnable and since is not None and since != stored.last_modified:
            return web.Response(status=412, headers=headers)
        ranged = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        if ranged is None or (if_range is not None and if_range not in (stored.etag,
                                                                        stored.last_modified)):
            return web.Response(body=stored.body, headers=headers)
        start, _, end = ranged.removeprefix("bytes=").partition("-")
        first, last = int(start), min(int(end or len(stored.body) - 1), len(stored.body) - 1)
        body = stored.body[first:last + 1]
        headers["Content-Range"] = f"bytes {first}-{last}/{len(stored.body)}"
        response = web.Response(status=206, body=body, headers=headers)
        if request.method == "GET":
            stored.ranged_reads += 1
            if stored.swap_to is not None and stored.ranged_reads >= stored.swap_after:
                stored.body, stored.swap_to = stored.swap_to, None
                stored.modified_s += 60
        return response


@asynccontextmanager
async def http_store(objects: dict[str, bytes], *,
                     signature: str | None = None) -> AsyncIterator[HttpStore]:
    """A store holding `objects` (path -> bytes), served on a free port of 127.0.0.1."""
    store = HttpStore({path: Stored(body) for path, body in objects.items()}, signature)
    app = web.Application()
    app.router.add_get("/{path:.+}", store.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    store.base = str(server.make_url("")).rstrip("/")
    try:
        yield store
    finally:
        await server.close()
