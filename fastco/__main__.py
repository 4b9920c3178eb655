"""The ``fastco`` command (``python -m fastco``): one subcommand per module.

    fastco echo [options]     a TCP echo server (fastco.echo)

Each subcommand is a module with ``main(argv, prog) -> exit status``; add one
to :data:`COMMANDS` to add a command.  Its module is imported only when run.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: name -> (module with main(argv, prog), one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "echo": ("fastco.echo", "a TCP echo server (fastco echo --help)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the subcommand and run it; returns its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="fastco",
        description="fastco's command line.",
        epilog="commands:\n" + "\n".join(f"  {name:<10} {text}"
                                         for name, (_, text) in COMMANDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fastco {_version()}")
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND",
                        help="one of: " + ", ".join(sorted(COMMANDS)))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the command's arguments")
    ns = parser.parse_args(argv[:1])   # the command's own options are its own business
    module = importlib.import_module(COMMANDS[ns.command][0])
    return int(module.main(argv[1:], prog=f"fastco {ns.command}") or 0)


def _version() -> str:
    from fastco import __version__
    return __version__


if __name__ == "__main__":
    sys.exit(main())
