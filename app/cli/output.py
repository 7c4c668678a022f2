"""What every ``lee`` command shares: how results, tables, errors and warnings are printed.

Results are JSON on stdout (indented for people, one line with ``--json``); tables are printed
with pandas (records JSON with ``--json``); errors and workbench warnings are one paragraph on
stderr. Nothing here computes a number.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import textwrap
import traceback
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from lee.errors import LeeWarning

EXIT_USAGE_OR_INPUT = 2
EXIT_OS = 1
EXIT_BUG = 3

AddCommon = Callable[[argparse.ArgumentParser], argparse.ArgumentParser]


def add_common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--json`` and ``--quiet``, which every command takes."""
    p.add_argument("--json", action="store_true", help="print machine-readable JSON on one line")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p


def strict_json(value: Any) -> Any:
    """NaN and infinities become null, so the output is strict JSON that any parser reads."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def emit(doc: dict[str, Any], args: argparse.Namespace) -> None:
    """Results as JSON on stdout: indented for people, one line with ``--json`` for scripts."""
    print(json.dumps(strict_json(doc), indent=None if getattr(args, "json", False) else 2, default=str,
                     allow_nan=False))


def print_frame(df: Any, args: argparse.Namespace) -> None:
    """A table: records JSON with ``--json``, else an aligned text table (``no runs`` when empty)."""
    import pandas as pd

    if args.json:
        print(df.to_json(orient="records"))
    elif df.empty:
        print("no runs")
    else:
        with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 40):
            print(df.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def print_error(exc: BaseException | str, *, prefix: str = "error") -> None:
    """One paragraph on stderr, whatever the message's line breaks."""
    text = " ".join(str(exc).split())
    print(textwrap.fill(f"{prefix}: {text}", width=100, break_long_words=False, break_on_hyphens=False),
          file=sys.stderr)


def command_name(args: argparse.Namespace) -> str:
    """``lee analyze health``: the command and subcommand that ``args`` selected."""
    words = ["lee"]
    command = getattr(args, "command", None)
    if command:
        words.append(str(command))
        sub = getattr(args, f"{command}_command", None)
        if sub:
            words.append(str(sub))
    return " ".join(words)


def report_crash(command: str, exc: BaseException, *, argv: Sequence[str] = ()) -> str | None:
    """An unexpected exception (a bug, not bad input): write the full traceback to a file under the
    system's temporary directory and print one paragraph naming the command and that file.

    Returns the file's path (None when it could not be written; the paragraph then says why).
    """
    what = " ".join(f"{type(exc).__name__}: {exc}".split())
    if len(what) > 300:
        what = what[:297] + "..."
    body = "".join(traceback.format_exception(exc))
    where: str | None
    try:
        fd, where = tempfile.mkstemp(prefix="lee-crash-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"{command} failed at {datetime.now(UTC).isoformat(timespec='seconds')}\n"
                     f"command line: {' '.join(map(str, argv))}\n"
                     f"python {platform.python_version()} on {platform.platform()}\n\n{body}")
        saved = f"the full traceback is in {where}"
    except OSError as write_error:
        where = None
        saved = f"the traceback could not be saved ({write_error.strerror or write_error})"
    print_error(f"{command} failed unexpectedly ({what}). This is a bug in LEE Workbench, not a problem the "
                f"checks found in your input; {saved}. Please include that file when reporting it.")
    return where


def show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: Any = None, line: str | None = None) -> None:
    """Workbench warnings as one 'warning: ...' paragraph (no source line); others as usual."""
    if issubclass(category, LeeWarning):
        print_error(message, prefix="warning")
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def quiet_log(args: argparse.Namespace) -> Callable[..., Any]:
    """``print`` unless ``--quiet`` or ``--json`` asked for silence."""
    return (lambda *_: None) if getattr(args, "quiet", False) or getattr(args, "json", False) else print


def names(text: str | None) -> tuple[str, ...] | None:
    """A comma-separated option as a tuple (None when not given)."""
    return tuple(x.strip() for x in text.split(",") if x.strip()) if text else None
