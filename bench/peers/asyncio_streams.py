"""Peer: asyncio streams (start_server, read(65536)/write+drain) on the
stdlib event loop."""

from __future__ import annotations

import asyncio

from _asyncio_common import serve
from _common import parse_args

if __name__ == "__main__":
    host, port = parse_args(__doc__.splitlines()[0])
    asyncio.run(serve(host, port, protocol=False))
