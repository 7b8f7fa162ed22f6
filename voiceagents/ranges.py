"""Files from storage answered with HTTP byte ranges (RFC 9110 §14), as browsers need to seek.

Chromium plays a WAV from any point only if the server answers ``Range: bytes=…`` with
``206 Partial Content``; Django's ``FileResponse`` always sends the whole file. This module
answers one range exactly. Rules followed (RFC 9110 §14.2):

* ``bytes=a-b``, ``bytes=a-`` (to the end) and ``bytes=-n`` (the last n bytes) get a ``206`` with
  ``Content-Range: bytes a-b/size``; an end past the file is cut to its last byte.
* A range that starts at or beyond the end of the file, or ``bytes=-0``, gets
  ``416 Range Not Satisfiable`` with ``Content-Range: bytes */size``.
* Several ranges (``bytes=0-1,5-9``), a header that is not valid byte-range syntax, another unit,
  or an ``If-Range`` (we keep no validator to compare it with) get the whole file with ``200``:
  a server may always ignore ``Range``, and a multipart answer buys a player nothing.

The body is read from storage a block at a time, never held whole in memory. Under ASGI it is an
asynchronous iterator (each block read in a worker thread): given a plain iterator, Django's ASGI
handler would first read it all into a list.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header

logger = logging.getLogger(__name__)

#: How much of the file one read takes (and one body chunk carries).
BLOCK_SIZE = 64 * 1024

_SPEC = re.compile(r"^(\d*)-(\d*)$")


@dataclass(frozen=True)
class ByteRange:
    """The bytes ``start`` to ``end`` of a file, both included (as ``Content-Range`` counts)."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class RangeNotSatisfiable(ValueError):
    """The range is valid but lies outside the file: the answer is ``416``."""


def parse_range(header: str, size: int) -> ByteRange | None:
    """The one byte range ``header`` asks of a ``size``-byte file, or ``None`` for the whole file.

    Raises :class:`RangeNotSatisfiable` when the range misses the file altogether.
    """
    unit, _, specs = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in specs:
        return None
    match = _SPEC.match(specs.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None  # "bytes=-": no range at all
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return ByteRange(max(size - suffix, 0), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None  # invalid syntax (RFC 9110 §14.1.1): ignored
    if start >= size:
        raise RangeNotSatisfiable(header)
    return ByteRange(start, min(int(last), size - 1) if last else size - 1)


def file_response(request, file, *, size: int, content_type: str, filename: str):
    """Answer ``request`` with ``file`` (open, seekable, ``size`` bytes), or the range it asks for.

    The response owns ``file`` and closes it when it is done with it.
    """
    wanted = None
    header = request.headers.get("Range", "")
    if header and request.method in ("GET", "HEAD") and "If-Range" not in request.headers:
        try:
            wanted = parse_range(header, size)
        except RangeNotSatisfiable:
            file.close()
            response = HttpResponse(status=416, content_type="text/plain")
            response["Content-Range"] = f"bytes */{size}"
            response["Accept-Ranges"] = "bytes"
            return response
    part = wanted or ByteRange(0, size - 1)
    if request.method == "HEAD":
        file.close()
        body = []
    else:
        reader = _AsyncBlocks if isinstance(request, ASGIRequest) else _SyncBlocks
        body = reader(file, part.start, part.length)
    response = StreamingHttpResponse(body, status=206 if wanted else 200, content_type=content_type)
    response["Content-Length"] = str(max(part.length, 0))
    response["Accept-Ranges"] = "bytes"
    if wanted:
        response["Content-Range"] = f"bytes {part.start}-{part.end}/{size}"
    response["Content-Disposition"] = content_disposition_header(False, filename)
    return response


class _Blocks:
    """``length`` bytes of ``file`` from ``start``, a block at a time; ``close`` closes the file.

    Django registers ``close`` with the response, which calls it once the body is sent (or the
    client went away), so the file never outlives the response.
    """

    def __init__(self, file, start: int, length: int):
        self.file = file
        self.start = start
        self.remaining = length
        self._seeked = False

    def read_block(self) -> bytes:
        if self.remaining <= 0:
            return b""
        if not self._seeked:
            self.file.seek(self.start)
            self._seeked = True
        block = self.file.read(min(BLOCK_SIZE, self.remaining))
        if not block:
            # The file is shorter than storage said: the client sees a short body.
            logger.warning(
                "file %s ended %d bytes early", getattr(self.file, "name", "?"), self.remaining
            )
            self.remaining = 0
            return b""
        self.remaining -= len(block)
        return block

    def close(self) -> None:
        self.file.close()


class _SyncBlocks(_Blocks):
    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        block = self.read_block()
        if not block:
            raise StopIteration
        return block


class _AsyncBlocks(_Blocks):
    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        # Not thread-sensitive: file reads need not wait for the thread that runs the ORM.
        block = await sync_to_async(self.read_block, thread_sensitive=False)()
        if not block:
            raise StopAsyncIteration
        return block
