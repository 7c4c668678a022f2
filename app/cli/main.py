"""The ``lee`` command line: one module per noun, this one only builds the parser and runs a command.

Every user-facing error is a :class:`~lee.errors.LeeError`; :func:`main` prints it as one paragraph
on stderr and exits with status 2 (1 for other operating-system errors such as a full disk),
never with a traceback. Anything else is a bug: one paragraph names the command and the file under
the system's temporary directory that holds the full traceback, and the exit status is 3.
Commands that report numbers print JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

import app.cli.fidelity as fidelity
from app.cli import analyze, casestudy, compare, data, demo, evaluate, gate, report, snapshots, upstream, world
from app.cli.output import (
    EXIT_BUG,
    EXIT_OS,
    EXIT_USAGE_OR_INPUT,
    add_common,
    command_name,
    print_error,
    report_crash,
    show_warning,
)
from lee import __version__
from lee.errors import LeeError

NOUNS = (world, data, upstream, snapshots, evaluate, analyze, compare, gate, fidelity, casestudy, report, demo)


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree; each noun module registers its own subcommands."""
    parser = argparse.ArgumentParser(prog="lee", description="LEE Workbench: embedding-quality analysis for "
                                     "recommendation and ads foundation models.")
    parser.add_argument("--version", action="version", version=f"lee {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for noun in NOUNS:
        noun.register(sub, add_common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; user errors become a one-paragraph message and a non-zero exit status."""
    args = build_parser().parse_args(argv)
    warnings.showwarning = show_warning
    try:
        return int(args.func(args) or 0)
    except LeeError as exc:
        print_error(exc)
        return EXIT_USAGE_OR_INPUT
    except BrokenPipeError:
        # the reader went away (`lee ... | head`): not an error; stdout is pointed at /dev/null so
        # Python's own flush at exit does not complain again (the Python docs' recipe)
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # disk full, permission denied: the OS's words, without a traceback
        print_error(exc)
        return EXIT_OS
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: one paragraph here, the traceback in a file
        report_crash(command_name(args), exc, argv=sys.argv if argv is None else ["lee", *map(str, argv)])
        return EXIT_BUG


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
