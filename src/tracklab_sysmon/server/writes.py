"""Bounded response writes: a stall deadline for clients that do not read, and JSON lists streamed in chunks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Iterator, Sequence

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024  # one write; aiohttp waits for the socket to drain before the next


_LINGER_ZERO = struct.pack("ii", 1, 0)  # close() sends RST and drops the kernel's send queue too


def reset(request: web.BaseRequest) -> None:
    """Drop the connection at once with a TCP reset, discarding what is buffered for it, ours and the kernel's.

    A plain close would leave the unsent bytes in the kernel (FIN-WAIT-1) until the peer reads them.
    """
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    transport.abort()


def write_deadline_middleware(timeout: float) -> Middleware:
    """Write each handler's response here, under a deadline; a client that stops reading is reset.

    Without it a response whose client never reads is held, with its buffers, until the client goes.
    Responses that handlers already wrote themselves (WebSocket, streamed lists) bound their own writes.
    """

    @web.middleware
    async def finish_in_time(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if response.prepared:
            return response
        try:
            async with asyncio.timeout(timeout):
                await response.prepare(request)
                await response.write_eof()
            if isinstance(response, web.Response):
                # aiohttp's connection loop keeps its last response (a local of RequestHandler.start) until the
                # next request, up to the keep-alive timeout. Its body is written: let it go. orjson's buffers are
                # 4 KiB or more and never shrunk, so this halves an idle kept-alive connection (16.0 -> 8.1 KiB).
                response.body = None
        except TimeoutError:
            log.debug("reset a client that read nothing for %.1f s", timeout)
            reset(request)
        except ConnectionError:
            pass  # the client went away; aiohttp finds the same and ends the connection
        return response

    return finish_in_time


def json_list_length(items: Sequence[bytes]) -> int:
    """Bytes of `[item,item,...]`."""
    return 2 + sum(map(len, items)) + max(len(items) - 1, 0)


def json_list_chunks(items: Sequence[bytes], chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """`[item,item,...]` in pieces of about `chunk_bytes` (an item is never split), so no copy holds it all."""
    batch: list[bytes] = [b"["]
    size = 1
    for index, item in enumerate(items):
        if index:
            batch.append(b",")
        batch.append(item)
        size += len(item) + 1
        if size >= chunk_bytes:
            yield b"".join(batch)
            batch, size = [], 0
    batch.append(b"]")
    yield b"".join(batch)


async def stream_json_list(request: web.Request, items: Sequence[bytes], stall_timeout: float) -> web.StreamResponse:
    """Send `items` as one JSON list, chunk by chunk; reset the client if one chunk waits `stall_timeout` s."""
    response = web.StreamResponse(headers={hdrs.CONTENT_TYPE: "application/json"})
    response.content_length = json_list_length(items)
    try:
        async with asyncio.timeout(stall_timeout):
            await response.prepare(request)
        if request.method != hdrs.METH_HEAD:
            for chunk in json_list_chunks(items):
                async with asyncio.timeout(stall_timeout):
                    await response.write(chunk)  # drains the socket when its buffer is over 64 KiB
        async with asyncio.timeout(stall_timeout):
            await response.write_eof()
    except TimeoutError:
        log.debug("reset a client that read nothing for %.1f s", stall_timeout)
        reset(request)
    except ConnectionError:
        pass
    return response


class StreamSlots:
    """A cap on concurrent large responses: each holds a slot while it is written."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    def try_acquire(self) -> bool:
        if self.in_use >= self.limit:
            return False
        self.in_use += 1
        return True

    def release(self) -> None:
        self.in_use -= 1


HISTORY_STREAMS = web.AppKey("history_streams", StreamSlots)
