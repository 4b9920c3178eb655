"""Compile the benchmark's C programs (the load generator and the C epoll
echo server) with the system compiler, into ``bench/.build/``.

Why not a Makefile: the harness and the tests call :func:`build_loadgen` /
:func:`build_c_server` directly and get a path back, so nothing has to be
built by hand first. A binary is named after a hash of its source, compiler
and flags, so an edited source is rebuilt and an unchanged one is reused;
the output is written to a temporary name and renamed, so concurrent builds
(pytest and a harness run) never see a half-written file.

Run as ``python -m bench._build_loadgen`` to build both and print their paths.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
BUILD_DIR = BENCH_DIR / ".build"
CFLAGS: tuple[str, ...] = ("-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror")


class BuildError(RuntimeError):
    """The compiler failed; the message carries its command and output."""


def build_c(source: Path, name: str) -> Path:
    """Compile one C file to an executable in :data:`BUILD_DIR`; return its path.

    The compiler is ``$CC`` (default ``cc``), with :data:`CFLAGS`
    (warnings are errors).
    """
    cc = shlex.split(os.environ.get("CC", "cc"))
    text = source.read_bytes()
    key = hashlib.sha256(text + repr((cc, CFLAGS)).encode()).hexdigest()[:12]
    out = BUILD_DIR / f"{name}-{key}"
    if out.exists():
        return out
    BUILD_DIR.mkdir(exist_ok=True)
    tmp = BUILD_DIR / f".{name}-{key}.{os.getpid()}.tmp"
    cmd = [*cc, *CFLAGS, "-o", str(tmp), str(source)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"{shlex.join(cmd)}: {exc}") from exc
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"{shlex.join(cmd)} failed:\n{proc.stderr}{proc.stdout}")
    # Binaries of earlier sources are left alone: a harness run may still be
    # using one. They are small; ``rm -rf bench/.build`` is always safe.
    os.replace(tmp, out)
    return out


def build_loadgen() -> Path:
    """Build ``bench/loadgen.c``; return the executable's path."""
    return build_c(BENCH_DIR / "loadgen.c", "loadgen")


def build_c_server() -> Path:
    """Build ``bench/peers/c_epoll_server.c``; return the executable's path."""
    return build_c(BENCH_DIR / "peers" / "c_epoll_server.c", "c_epoll_server")


if __name__ == "__main__":
    print(build_loadgen())
    print(build_c_server())
