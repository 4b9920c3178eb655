"""The asyncio echo servers shared by the asyncio and uvloop peers.

Two styles: streams (``start_server`` and a ``read``/``write``+``drain``
loop, what most asyncio code looks like) and a bare ``Protocol`` that writes
back in ``data_received`` (the fastest thing asyncio offers). The event loop
(the stdlib's or uvloop's) is chosen by the calling script.
"""

from __future__ import annotations

import asyncio
import signal
from typing import cast

from _common import announce


async def echo_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo one connection with the streams API until the client closes."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass  # the client reset or vanished: an expected end
    finally:
        writer.close()


class EchoProtocol(asyncio.Protocol):
    """Write every received chunk straight back (no flow control: the
    closed-loop client never has more than one message in flight)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport: no isinstance.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def serve(host: str, port: int, *, protocol: bool) -> None:
    """Listen, announce, and serve until SIGTERM or SIGINT.

    With ``protocol`` the server uses :class:`EchoProtocol`, otherwise
    :func:`echo_stream`. Open connections are simply dropped at exit (the
    loop closes them), so that shutdown never waits for clients.
    """
    loop = asyncio.get_running_loop()
    if protocol:
        server = await loop.create_server(EchoProtocol, host, port)
    else:
        server = await asyncio.start_server(echo_stream, host, port)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    announce(server.sockets[0].getsockname())
    await stop.wait()
    server.close()
