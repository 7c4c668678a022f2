"""One typed loader for every configuration: job files, health thresholds, the suite, worlds.

Every config is a :class:`ConfigModel` (pydantic v2): frozen, unknown keys refused, types and
ranges declared once on the model that owns the setting. Two ways in:

- **From a file or the command line** (:func:`load_config`, :meth:`ConfigModel.from_dict`):
  validated in pydantic's strict JSON mode, so nothing is coerced — ``windows = "3"``,
  ``windows = 3.9`` and ``latest_only = "false"`` are errors, while an integer where a number
  belongs is fine. TOML datetimes are passed on as ISO 8601 text for fields typed as
  :data:`EventTime`.
- **From Python** (``Model(field=value)``): pydantic's lax mode, so code may pass plain strings
  for enum fields and lists for tuples.

Either way a bad value is a :class:`~lee.errors.ConfigError` whose message is one paragraph
naming the source (file or flag), the key with its section (``[eval] windows``), what was
expected and what came (the value and its TOML type); unknown keys are named with the known
ones listed.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from enum import Enum
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from lee.errors import ConfigError, LeeError
from lee.timeutil import parse_event_time

M = TypeVar("M", bound="ConfigModel")

_MAX_REPR = 80


def _event_time(value: Any) -> Any:
    """Text (ISO 8601 or the snapshot directory form) becomes an aware UTC datetime; others pass on."""
    if isinstance(value, datetime):
        return parse_event_time(value)
    if isinstance(value, str):
        try:
            return parse_event_time(value)
        except LeeError:
            raise ValueError("an event time such as 2026-01-01T00:10:00Z (a TOML datetime or ISO 8601 text)") from None
    return value


EventTime = Annotated[datetime, BeforeValidator(_event_time)]
"""An event time: a TOML datetime, ISO 8601 text or the directory form ``20260101T001000Z`` (UTC)."""


class ConfigModel(BaseModel):
    """Base of every configuration: frozen, unknown keys refused, errors as one-paragraph ConfigErrors."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    config_name: ClassVar[str] = "config"
    """How a config built in code is named in its errors (``world config: n_users: ...``)."""

    if not TYPE_CHECKING:  # type checkers keep the typed signature pydantic generates

        def __init__(self, /, **data: Any) -> None:
            """Validate in lax mode; a bad value is a ConfigError (one paragraph), not a ValidationError."""
            try:
                super().__init__(**data)
            except ValidationError as exc:
                raise ConfigError(describe(exc, type(self), data, source=self.config_name, kind=None)) from None

        # Tell pydantic this is its own __init__: nested models are then validated by the core
        # validator (strict JSON mode and context intact) instead of through this method.
        __init__.__pydantic_base_init__ = True

    @classmethod
    def from_dict(cls: type[M], raw: Mapping[str, Any], *, source: str | None = None,
                  kind: str | None = None) -> M:
        """Validate plain data (parsed TOML or JSON, command-line values) strictly: no coercion.

        ``source`` names where the data came from in errors (default: the config's name);
        ``kind`` names the format of its values (``TOML``) when they came from a file.
        """
        return validate_config(cls, raw, source=source or cls.config_name, kind=kind)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (enums as their text, tuples as lists)."""
        return self.model_dump(mode="json")


def enum_values(enum_cls: type[Enum]) -> list[str]:
    """The values of an enum as plain strings, e.g. for argparse ``choices`` and select boxes."""
    return [str(member.value) for member in enum_cls]


# ------------------------------------------------------------------------------------------------
# reading and validating
# ------------------------------------------------------------------------------------------------


def read_toml(path: str | Path, *, what: str = "config file") -> dict[str, Any]:
    """The parsed TOML of ``path``; a missing, unreadable or malformed file is a ConfigError naming it."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: {what} not found")
    if not path.is_file():
        raise ConfigError(f"{path}: {what} is not a regular file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML (the file is not UTF-8 text)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def load_config(cls: type[M], path: str | Path, *, table: str | None = None, what: str = "config file",
                context: dict[str, Any] | None = None) -> M:
    """Read ``path`` (TOML) into ``cls``, strictly typed.

    With ``table``, the settings may sit either at the top level of the file or in a table of
    that name (e.g. ``[health]``); ``context`` is passed to the model's validators (the job file
    uses it to resolve relative paths).
    """
    raw = read_toml(path, what=what)
    prefix: tuple[str, ...] = ()
    if table is not None and table in raw:
        others = sorted(set(raw) - {table})
        if others:
            raise ConfigError(f"{path}: unknown key(s) {', '.join(others)} outside [{table}]; the file holds "
                              f"either a [{table}] table or its keys at the top level")
        raw, prefix = raw[table], (table,)
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: {table}: expected a table; got {_got(raw, 'TOML')}")
    return validate_config(cls, raw, source=str(path), kind="TOML", context=context, prefix=prefix)


def validate_config(cls: type[M], raw: Mapping[str, Any], *, source: str, kind: str | None = "TOML",
                    context: dict[str, Any] | None = None, prefix: tuple[str, ...] = ()) -> M:
    """Strict validation of plain data into ``cls``; errors are one ConfigError paragraph naming ``source``."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: expected a table of settings; got {_got(raw, kind)}")
    try:
        text = json.dumps(raw, default=_json_default, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: cannot read the settings ({exc})") from None
    try:
        return cls.model_validate_json(text, strict=True, context=context)
    except ValidationError as exc:
        raise ConfigError(describe(exc, cls, raw, source=source, kind=kind, prefix=prefix)) from None


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"a {type(value).__name__} value ({value!r}) is not a setting")


# ------------------------------------------------------------------------------------------------
# error messages
# ------------------------------------------------------------------------------------------------


def describe(exc: ValidationError, model: type[BaseModel], raw: Any, *, source: str, kind: str | None,
             prefix: tuple[str, ...] = ()) -> str:
    """One paragraph for every problem in ``exc``: where (section and key), expected, got."""
    parts: list[str] = []
    unknown: dict[tuple[str, ...], list[str]] = {}
    errors = exc.errors(include_url=False)
    bad_items = {tuple(e["loc"][:-1]) for e in errors if e["loc"] and isinstance(e["loc"][-1], int)}
    for err in errors:
        loc = tuple(err["loc"])
        if err["type"] in ("too_short", "too_long") and loc in bad_items:
            continue  # an item was refused: that is the error, not the length it left behind
        if err["type"] == "extra_forbidden" and loc:
            unknown.setdefault(tuple(str(x) for x in loc[:-1]), []).append(str(loc[-1]))
            continue
        parts.append(_one(err, model, raw, kind, prefix))
    for parent, keys in unknown.items():
        parts.append(_unknown(model, parent, keys, raw, prefix))
    return f"{source}: " + "; ".join(parts)


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    """The model class an annotation holds (through ``X | None``), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, UnionType):
        for arg in get_args(annotation):
            found = _unwrap_model(arg)
            if found is not None:
                return found
    return None


def _split(model: type[BaseModel], loc: Sequence[Any]) -> tuple[list[str], list[Any]]:
    """Split a location into its tables (sub-models) and the key within the last of them."""
    section: list[str] = []
    cls: type[BaseModel] | None = model
    i = 0
    while cls is not None and i < len(loc) - 1 and isinstance(loc[i], str) and loc[i] in cls.model_fields:
        sub = _unwrap_model(cls.model_fields[loc[i]].annotation)
        if sub is None:
            break
        section.append(loc[i])
        cls = sub
        i += 1
    return section, list(loc[i:])


def _model_at(model: type[BaseModel], path: Sequence[Any]) -> type[BaseModel] | None:
    cls: type[BaseModel] | None = model
    for name in path:
        if cls is None or not isinstance(name, str) or name not in cls.model_fields:
            return None
        cls = _unwrap_model(cls.model_fields[name].annotation)
    return cls


def _where(section: Sequence[str], key: Sequence[Any]) -> str:
    name = ""
    for k, part in enumerate(key):
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if k else str(part))
    if section:
        return f"[{'.'.join(section)}] {name}" if name else f"[{'.'.join(section)}]"
    return name


def _lookup(raw: Any, loc: Sequence[Any]) -> tuple[bool, Any]:
    value = raw
    for part in loc:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, (list, tuple)) and isinstance(part, int) and 0 <= part < len(value):
            value = value[part]
        else:
            return False, None
    return True, value


def _one(err: Any, model: type[BaseModel], raw: Any, kind: str | None, prefix: tuple[str, ...]) -> str:
    loc = tuple(err["loc"])
    section, key = _split(model, loc)
    where = _where([*prefix, *section], key)
    if err["type"] == "missing":
        if _model_at(model, loc) is not None:  # a whole table is missing
            return f"needs a {_table([*prefix, *(str(x) for x in loc)])} table"
        table = [*prefix, *section]
        return f"{_table(table) + ' ' if table else ''}needs {_where([], key)}"
    found, value = _lookup(raw, loc)
    if not found:
        value = err.get("input")
    if err["type"] == "value_error" and (not loc or _model_at(model, loc) is not None):
        table = [*prefix, *(str(x) for x in loc)]  # a check across several settings of one table
        return f"{_table(table)} {_message(err)}" if table else _message(err)
    prefix_text = f"{where}: " if where else ""
    return f"{prefix_text}expected {_expected(err)}; got {_got(value, kind)}"


def _unknown(model: type[BaseModel], parent: tuple[str, ...], keys: list[str], raw: Any,
             prefix: tuple[str, ...]) -> str:
    cls = _model_at(model, parent)
    _, values = _lookup(raw, parent)
    tables = [k for k in keys if isinstance(values, Mapping) and isinstance(values.get(k), Mapping)]
    plain = [k for k in keys if k not in tables]
    fields = cls.model_fields if cls is not None else {}
    known_tables = sorted(k for k, f in fields.items() if _unwrap_model(f.annotation) is not None)
    known_keys = sorted(k for k in fields if k not in known_tables)
    path = [*prefix, *parent]
    inside = f" in [{'.'.join(path)}]" if path else ""
    said = []
    if plain:
        said.append(f"unknown key(s) {', '.join(plain)}{inside}")
    if tables:
        said.append(f"unknown section{'s' if len(tables) > 1 else ''} {', '.join(_table([*path, t]) for t in tables)}")
    known = []
    if known_keys:
        known.append(f"known keys: {', '.join(known_keys)}")
    if known_tables:
        known.append(f"known sections: {', '.join(_table([*path, t]) for t in known_tables)}")
    return "; ".join(said + known)


def _table(path: Sequence[str]) -> str:
    return "[" + ".".join(path) + "]"


def _message(err: Any) -> str:
    msg = str(err.get("msg", ""))
    for lead in ("Value error, ", "Assertion failed, "):
        if msg.startswith(lead):
            return msg[len(lead):]
    return msg


_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number",
    "bool_type": "a boolean (true or false)", "bool_parsing": "a boolean (true or false)",
    "string_type": "a string", "str_type": "a string",
    "tuple_type": "an array", "list_type": "an array", "iterable_type": "an array", "set_type": "an array",
    "model_type": "a table", "model_attributes_type": "a table", "dict_type": "a table",
    "datetime_type": "an event time (a TOML datetime or ISO 8601 text)",
    "datetime_parsing": "an event time (a TOML datetime or ISO 8601 text)",
    "datetime_from_date_parsing": "an event time (a TOML datetime or ISO 8601 text)",
    "path_type": "a path (a string)",
    "none_required": "nothing",
}


def _expected(err: Any) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    if kind in ("enum", "literal_error"):
        return f"one of {ctx.get('expected', '')}"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()), "?")
        if isinstance(limit, float) and limit.is_integer():
            limit = int(limit)  # "> 1", as the bound reads in the code, whatever the field's type
        return f"a value {bounds[kind]} {limit}"
    if kind == "too_short":
        return f"at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"at most {ctx.get('max_length')} item(s)"
    if kind == "value_error":
        return _message(err)
    return _message(err)


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "table"
    if isinstance(value, datetime):
        return "datetime"
    if isinstance(value, date):
        return "date"
    if isinstance(value, time):
        return "time"
    if value is None:
        return "nothing"
    return type(value).__name__


def _toml_repr(value: Any) -> str:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, (datetime, date, time)):
        text = value.isoformat()
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(_toml_repr(v) for v in value) + "]"
    elif isinstance(value, Mapping):
        text = "{" + ", ".join(f"{k} = {_toml_repr(v)}" for k, v in value.items()) + "}"
    elif value is None:
        text = "nothing"
    else:
        text = repr(value)
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 1] + "…"


def _got(value: Any, kind: str | None) -> str:
    """``"3" (a TOML string)``: the value as written and its type."""
    name = _toml_type(value)
    if name == "nothing":
        return "nothing"
    article = "an" if (kind or name)[0].lower() in "aeiou" else "a"
    return f"{_toml_repr(value)} ({article} {kind + ' ' if kind else ''}{name})"
