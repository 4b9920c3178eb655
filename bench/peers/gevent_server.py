"""Peer: gevent's StreamServer with the obvious recv/sendall echo handler.

This is the baseline fastco's echo server is meant to beat: the same
handler a user would write, run by gevent's libev hub. No socket options
beyond gevent's defaults are set.
"""

from __future__ import annotations

import signal

import gevent
from _common import announce, parse_args
from gevent.event import Event
from gevent.server import StreamServer
from gevent.socket import socket


def handle(sock: socket, address: tuple[str, int]) -> None:
    """Echo until the client closes; StreamServer closes the socket after."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            sock.sendall(data)
    except OSError:
        pass  # the client reset or vanished: an expected end, not an error


def main() -> None:
    """Serve until SIGTERM or SIGINT, then stop the listener and exit 0."""
    host, port = parse_args(__doc__.splitlines()[0])
    server = StreamServer((host, port), handle)
    server.start()
    stop = Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop.set)
    announce(server.address)
    stop.wait()
    server.stop(timeout=1)


if __name__ == "__main__":
    main()
