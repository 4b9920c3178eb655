"""Peer: asyncio streams (start_server, read(65536)/write+drain) on uvloop."""

from __future__ import annotations

import uvloop
from _asyncio_common import serve
from _common import parse_args

if __name__ == "__main__":
    host, port = parse_args(__doc__.splitlines()[0])
    uvloop.run(serve(host, port, protocol=False))
