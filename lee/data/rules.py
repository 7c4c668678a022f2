"""The two small grammars an import takes on the command line: a click rule and a split.

* **Click rule** (``--positive 'rating>=4'``): ``COLUMN OP VALUE`` with ``OP`` one of
  ``>= > <= < == !=`` and ``VALUE`` a number, or for ``==`` / ``!=`` a word or quoted text. It is
  parsed, never evaluated as code; :meth:`LabelRule.apply` turns a column into 0/1 labels and names
  the first row it cannot compare.
* **Split** (``--split``): ``none``, ``part`` (the ``part`` column says upstream / downstream),
  ``user:0.3`` (the later 30% of each user's events are downstream), or ``time:T`` (events at or
  after ``T`` are downstream; ``T`` is ISO 8601 text or epoch seconds).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lee.data.spec import SplitKind, SplitSpec
from lee.errors import InputError

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq, "!=": operator.ne,
}
_RULE = re.compile(r"""^\s*([A-Za-z_][\w.\-]*)\s*(>=|<=|==|!=|>|<)\s*(?:"([^"]*)"|'([^']*)'|(\S+))\s*$""")
_YEAR_2100 = 4_102_444_800
_SCALE_WORDS = {1_000: "milliseconds", 1_000_000: "microseconds", 1_000_000_000: "nanoseconds"}
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class LabelRule:
    """``label = 1 where column OP value, else 0``."""

    column: str
    op: str
    value: float | str

    @classmethod
    def parse(cls, text: str) -> LabelRule:
        """Read ``COLUMN OP VALUE``; anything else is an InputError showing the grammar."""
        m = _RULE.match(text or "")
        if not m:
            raise InputError(f"--positive {text!r}: expected COLUMN OP VALUE, e.g. 'rating>=4' "
                             f"(OP one of {' '.join(_OPS)}; VALUE a number, or text for == and !=)")
        column, op = m.group(1), m.group(2)
        quoted = m.group(3) if m.group(3) is not None else m.group(4)
        raw = quoted if quoted is not None else m.group(5)
        if quoted is None and _NUMBER.match(raw):
            return cls(column, op, float(raw))
        if op not in ("==", "!="):
            raise InputError(f"--positive {text!r}: {op} compares numbers; {raw!r} is not a number "
                             "(text can only be compared with == or !=)")
        return cls(column, op, raw)

    def describe(self, label: str = "label") -> str:
        value = f"{self.value:g}" if isinstance(self.value, float) else repr(self.value)
        return f"{label} = 1 where {self.column} {self.op} {value}, else 0"

    def apply(self, values: pd.Series | np.ndarray, *, where: Callable[[int], str]) -> np.ndarray:
        """0/1 labels (int8) of ``values``; ``where(k)`` names row ``k`` (file and line) in errors."""
        s = pd.Series(values)
        missing = s.isna().to_numpy()
        if missing.any():
            k = int(np.flatnonzero(missing)[0])
            raise InputError(f"{where(k)}: column {self.column} is empty; the click rule "
                             f"{self.describe()} needs a value on every row")
        if isinstance(self.value, float):
            num = pd.to_numeric(s, errors="coerce").to_numpy(np.float64)
            bad = np.isnan(num)
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                raise InputError(f"{where(k)}: column {self.column} holds {s.iloc[k]!r}; the click rule "
                                 f"{self.describe()} needs a number")
            return _OPS[self.op](num, self.value).astype(np.int8)
        return _OPS[self.op](s.astype(str).to_numpy(), self.value).astype(np.int8)


def parse_split(text: str) -> SplitSpec:
    """``none`` | ``part`` | ``user:FRACTION`` | ``time:ISO-or-epoch-seconds`` as a :class:`SplitSpec`."""
    raw = (text or "").strip()
    kind, _, arg = raw.partition(":")
    usage = ("expected none, part, user:FRACTION (e.g. user:0.3, the later 30% of each user's events are "
             "downstream) or time:T (events at or after T are downstream; ISO 8601 or epoch seconds)")
    if kind in ("none", "part") and not arg:
        return SplitSpec(kind=SplitKind(kind))
    if kind == "user" and arg:
        try:
            fraction = float(arg)
        except ValueError:
            raise InputError(f"--split {text!r}: {arg!r} is not a number; {usage}") from None
        if not 0.0 < fraction < 1.0:
            raise InputError(f"--split {text!r}: the fraction must lie strictly between 0 and 1")
        return SplitSpec(kind=SplitKind.USER_FRACTION, fraction=fraction)
    if kind == "time" and arg:
        from lee.timeutil import epoch_seconds, parse_event_time

        try:
            cut = int(arg) if re.fullmatch(r"[+-]?\d+", arg) else epoch_seconds(parse_event_time(arg))
        except InputError:
            raise InputError(f"--split {text!r}: {arg!r} is not a time; {usage}") from None
        check_cut(cut, f"--split {text!r}", "time:{}")
        return SplitSpec(kind=SplitKind.TIME, cut=cut)
    raise InputError(f"--split {text!r}: {usage}")


def check_cut(cut: int, where: str, form: str) -> None:
    """Refuse a time cut after 2100: epoch milliseconds (or finer) given where seconds are meant.

    ``form`` shows how to write the corrected cut (``time:{}`` for the flag, ``cut = {}`` in a mapping).
    """
    if cut < _YEAR_2100:
        return
    scale = next((n for n in (1_000, 1_000_000, 1_000_000_000) if cut // n < _YEAR_2100), None)
    looks = (f"it looks like epoch {_SCALE_WORDS[scale]}: give {form.format(cut // scale)} (seconds)"
             if scale else "give epoch seconds")
    raise InputError(f"{where}: the cut {cut} read as epoch seconds is after the year 2100; {looks}")
