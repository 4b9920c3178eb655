"""What every Python peer server shares: the command line and the ready line.

The harness (bench/echo_bench.py) starts each peer as
``python bench/peers/<name>.py --port P`` and waits until the port accepts;
the ``listening on HOST:PORT`` line is for people and for ``--port 0``, where
it tells which port the system picked.
"""

from __future__ import annotations

import argparse


def parse_args(description: str) -> tuple[str, int]:
    """Parse ``--host`` (default 127.0.0.1) and ``--port``; return them."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, required=True, help="port (0: any free port)")
    args = parser.parse_args()
    return args.host, args.port


def announce(sockname: tuple[str, int]) -> None:
    """Print the ready line, flushed at once so that a pipe sees it."""
    host, port = sockname[0], sockname[1]
    print(f"listening on {host}:{port}", flush=True)
