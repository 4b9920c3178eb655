"""Peer: uvloop with a Protocol that writes back in data_received (the
fastest asyncio-style server: no coroutine per message)."""

from __future__ import annotations

import uvloop
from _asyncio_common import serve
from _common import parse_args

if __name__ == "__main__":
    host, port = parse_args(__doc__.splitlines()[0])
    uvloop.run(serve(host, port, protocol=True))
