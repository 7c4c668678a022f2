"""One shape for every result a front door shows: ``summary()``, ``tables()``, ``save(dir)``, ``load(dir)``.

A saved result is a directory::

    result.json     {"format": "lee-result", "format_version": 1, "kind": "volatility",
                     "summary": {...}, "tables": {"name": "name.csv"}, "state": {...}}
    <name>.csv      one per table of ``tables()``: what a user opens in a spreadsheet
    state/          NNNN.npy (numeric arrays) and NNNN.parquet (frames, text arrays) of ``state``

``summary`` and the CSVs are projections for people and other tools; ``state`` is the object
itself, field by field, so that :func:`load_result` gives back an equal object without
recomputing anything (the dashboard opens a finished run this way). Nothing is pickled: arrays
are ``.npy`` read with ``allow_pickle=False``, frames are Parquet, everything else is JSON, and
only registered types can be rebuilt, so a hostile result directory cannot run code.

A dataclass field with ``metadata={"save": False}`` (a trained model, a cache) is left out and
comes back as its default. Result types register under a stable name with :func:`register` (engine and analysis types
alike); a layer above the engine may :func:`declare` a name with the module that defines it, so a
loader imports only the modules whose results it actually opens.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
import math
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lee.errors import InputError
from lee.fileio import atomic_dir

FORMAT = "lee-result"
FORMAT_VERSION = 1
RESULT_FILE = "result.json"
_STATE_FILE = re.compile(r"state/\d{4,}\.(npy|parquet)")
_ALLOWED_MODULES = ("lee.", "analysis.", "app.")

T = TypeVar("T")


@runtime_checkable
class Result(Protocol):
    """What every result shown by a front door offers (the dashboard, the report and the CLI read it)."""

    def summary(self) -> dict[str, Any]: ...

    def tables(self) -> dict[str, pd.DataFrame]: ...

    def save(self, directory: str | Path, *, overwrite: bool = True) -> Path: ...


_REGISTRY: dict[str, type] = {}
_NAMES: dict[type, str] = {}
_DECLARED: dict[str, str] = {}


def register(name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: ``name`` is how saved files refer to the type (keep it stable)."""

    def deco(cls: type[T]) -> type[T]:
        if _REGISTRY.get(name, cls) is not cls:
            raise TypeError(f"result type name {name!r} is already registered for {_REGISTRY[name]!r}")
        _REGISTRY[name] = cls
        _NAMES[cls] = name
        return cls

    return deco


def declare(name: str, where: str) -> None:
    """Say that type ``name`` is defined in ``where`` (``module:Class``), imported on first load."""
    _DECLARED.setdefault(name, where)


def _resolve(name: str, path: Path) -> type[Any]:
    if name not in _REGISTRY and name in _DECLARED:
        module = _DECLARED[name].split(":", 1)[0]
        if module.startswith(_ALLOWED_MODULES):
            importlib.import_module(module)
    if name not in _REGISTRY:
        raise InputError(f"{path}: unknown result type {name!r} (written by a newer version?)")
    return _REGISTRY[name]


def type_name(obj: Any) -> str | None:
    return _NAMES.get(type(obj))


# ---------------------------------------------------------------------------------------------
# encoding
# ---------------------------------------------------------------------------------------------


class _Writer:
    """Encodes a value into JSON, writing arrays and frames under ``root/state``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def _file(self, suffix: str) -> tuple[str, Path]:
        (self.root / "state").mkdir(exist_ok=True)
        self.count += 1
        rel = f"state/{self.count:04d}.{suffix}"
        return rel, self.root / rel

    def encode(self, value: Any) -> Any:  # noqa: C901 - one branch per kind of value
        if value is None or isinstance(value, (bool, str)) and not isinstance(value, enum.Enum):
            return value
        if isinstance(value, enum.Enum):
            name = _NAMES.get(type(value))
            return {"$enum": name, "value": value.value} if name else value.value
        if isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_):
            return int(value)
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, (float, np.floating)):
            v = float(value)
            return v if math.isfinite(v) else {"$float": repr(v)}
        if isinstance(value, pd.Timestamp):
            return {"$timestamp": value.isoformat()}
        if isinstance(value, datetime):
            return {"$datetime": value.isoformat()}
        if isinstance(value, Path):
            return {"$path": str(value)}
        if isinstance(value, np.ndarray):
            return self._array(value)
        if isinstance(value, pd.DataFrame):
            return self._frame(value)
        if isinstance(value, pd.Series):
            return {"$series": self._frame(value.to_frame(name="value")), "name": self.encode(value.name)}
        if isinstance(value, tuple):
            return {"$tuple": [self.encode(v) for v in value]}
        if isinstance(value, list):
            return [self.encode(v) for v in value]
        if isinstance(value, dict):
            if all(isinstance(k, str) and not isinstance(k, enum.Enum) and not k.startswith("$") for k in value):
                return {k: self.encode(v) for k, v in value.items()}
            return {"$dict": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
        name = _NAMES.get(type(value))
        if name is not None and dataclasses.is_dataclass(value):
            return {"$type": name, "fields": {f.name: self.encode(getattr(value, f.name))
                                              for f in dataclasses.fields(value) if f.metadata.get("save", True)}}
        if name is not None and hasattr(value, "model_dump"):  # a registered pydantic model
            return {"$type": name, "model": value.model_dump(mode="json")}
        raise TypeError(f"cannot save a {type(value).__module__}.{type(value).__qualname__}; register it first")

    def _array(self, arr: np.ndarray) -> dict[str, Any]:
        if arr.dtype.kind in "biuf" and arr.dtype.byteorder in "=|<":
            rel, path = self._file("npy")
            np.save(path, np.ascontiguousarray(arr), allow_pickle=False)
            return {"$ndarray": rel}
        rel, path = self._file("parquet")
        flat = arr.reshape(-1)
        pq.write_table(pa.table({"v": pa.array(flat.tolist() if arr.dtype.kind == "O" else flat)}), path)
        return {"$ndarray": rel, "shape": list(arr.shape), "dtype": arr.dtype.str if arr.dtype.kind != "O" else "O"}

    def _frame(self, frame: pd.DataFrame) -> dict[str, Any]:
        rel, path = self._file("parquet")
        labels = list(frame.columns)
        plain = all(isinstance(c, str) for c in labels) and len(set(labels)) == len(labels)
        out = frame if plain else frame.set_axis([f"c{i}" for i in range(len(labels))], axis=1)
        out = out.copy()
        objects: dict[str, list[Any]] = {}
        for col in out.columns:  # mixed-type object columns: JSON text, restored on load
            if out[col].dtype == object:
                kinds = {type(v) for v in out[col] if v is not None and not (isinstance(v, float) and math.isnan(v))}
                if len(kinds) > 1 or (kinds and not kinds <= {str}):
                    objects[str(col)] = []
                    out[col] = [json.dumps(self.encode(v), allow_nan=False) for v in out[col]]
        try:
            out.to_parquet(path, engine="pyarrow", index=not isinstance(out.index, pd.RangeIndex) or
                           out.index.start != 0 or out.index.step != 1 or out.index.name is not None)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise TypeError(f"cannot save a frame with columns {labels[:8]}: {exc}") from None
        doc: dict[str, Any] = {"$frame": rel}
        if not plain:
            doc["columns"] = [self.encode(c) for c in labels]
        if objects:
            doc["json_columns"] = sorted(objects)
        return doc


class _Reader:
    """Decodes what :class:`_Writer` wrote; only registered types, only files under ``state/``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, rel: Any) -> Path:
        if not isinstance(rel, str) or not _STATE_FILE.fullmatch(rel):
            raise InputError(f"{self.root / RESULT_FILE}: bad state file reference {rel!r}")
        path = self.root / rel
        if not path.is_file():
            raise InputError(f"{path}: missing (the saved result is incomplete)")
        return path

    def decode(self, doc: Any) -> Any:  # noqa: C901 - mirrors _Writer.encode
        if isinstance(doc, list):
            return [self.decode(v) for v in doc]
        if not isinstance(doc, dict):
            return doc
        if "$float" in doc:
            return float(doc["$float"])
        if "$enum" in doc:
            return _resolve(doc["$enum"], self.root)(doc["value"])
        if "$timestamp" in doc:
            return pd.Timestamp(doc["$timestamp"])
        if "$datetime" in doc:
            return datetime.fromisoformat(doc["$datetime"])
        if "$path" in doc:
            return Path(doc["$path"])
        if "$ndarray" in doc:
            path = self._path(doc["$ndarray"])
            if path.suffix == ".npy":
                return np.load(path, allow_pickle=False)
            values = pq.read_table(path).column("v").to_pylist()
            dtype = doc.get("dtype", "O")
            arr = np.empty(len(values), dtype=object) if dtype == "O" else np.asarray(values, dtype=np.dtype(dtype))
            if dtype == "O":
                arr[:] = values
            return arr.reshape(doc.get("shape", [len(values)]))
        if "$frame" in doc:
            frame = pd.read_parquet(self._path(doc["$frame"]), engine="pyarrow")
            for col in doc.get("json_columns", []):
                frame[col] = [self.decode(json.loads(v)) if v is not None else None for v in frame[col]]
            if "columns" in doc:
                frame.columns = [self.decode(c) for c in doc["columns"]]
            return frame
        if "$series" in doc:
            frame = self.decode(doc["$series"])
            return frame["value"].rename(self.decode(doc.get("name")))
        if "$tuple" in doc:
            return tuple(self.decode(v) for v in doc["$tuple"])
        if "$dict" in doc:
            return {_hashable(self.decode(k)): self.decode(v) for k, v in doc["$dict"]}
        if "$type" in doc:
            cls = _resolve(doc["$type"], self.root)
            if "model" in doc:
                return cls.model_validate(doc["model"])
            obj = object.__new__(cls)  # the saved state, field by field: no __init__/__post_init__ re-run
            names = {f.name for f in dataclasses.fields(cls)}
            for key, value in doc["fields"].items():
                if key in names:
                    object.__setattr__(obj, key, self.decode(value))
            for f in dataclasses.fields(cls):
                if f.name not in doc["fields"]:
                    if f.default is not dataclasses.MISSING:
                        object.__setattr__(obj, f.name, f.default)
                    elif f.default_factory is not dataclasses.MISSING:
                        object.__setattr__(obj, f.name, f.default_factory())
                    else:
                        raise InputError(f"{self.root / RESULT_FILE}: saved {doc['$type']} lacks field {f.name}")
            return obj
        return {k: self.decode(v) for k, v in doc.items()}


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


# ---------------------------------------------------------------------------------------------
# saving and loading
# ---------------------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A JSON-safe copy for people: numpy scalars to Python, NaN/Inf to None, times to ISO text."""
    if isinstance(value, dict):
        return {str(k.value if isinstance(k, enum.Enum) else k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, pd.Interval):
        return str(value)
    return value


def _csv_name(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.+=-]+", "_", name).strip("._") or "table"
    return f"{safe}.csv"


def save_result(result: Any, directory: str | Path, *, overwrite: bool = True) -> Path:
    """Write ``result`` (a registered type with ``summary()`` and ``tables()``) as a result directory.

    The directory appears whole or not at all (written beside it, then renamed). An existing
    saved result there is replaced when ``overwrite``; any other non-empty directory is refused.
    """
    name = type_name(result)
    if name is None:
        raise TypeError(f"{type(result).__qualname__} is not a registered result type")
    directory = Path(directory)
    if directory.is_dir() and any(directory.iterdir()) and not (directory / RESULT_FILE).is_file():
        raise InputError(f"{directory}: exists and is not a saved result; choose an empty or new directory")
    with atomic_dir(directory, overwrite=overwrite) as tmp:
        tables = result.tables()
        files: dict[str, str] = {}
        used: set[str] = set()
        for key, frame in tables.items():
            fname = _csv_name(key)
            while fname in used:
                fname = fname[:-4] + "_.csv"
            used.add(fname)
            files[key] = fname
            (tmp / fname).write_text(frame.to_csv(index=False), encoding="utf-8")  # atomic_dir fsyncs
        writer = _Writer(tmp)
        doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": name,
               "summary": plain(result.summary()), "tables": files, "state": writer.encode(result)}
        (tmp / RESULT_FILE).write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return directory


def read_result_doc(directory: str | Path) -> dict[str, Any]:
    """The ``result.json`` of a saved result, checked for format and version."""
    path = Path(directory) / RESULT_FILE
    if not path.is_file():
        raise InputError(f"{directory}: not a saved result (no {RESULT_FILE})")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise InputError(f"{path}: not a LEE result file (format {found!r})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{path}: result format version {doc.get('format_version')!r}; this version reads "
                         f"{FORMAT_VERSION}")
    return doc


def load_result(directory: str | Path, expected: type[T] | None = None) -> T:
    """The object saved in ``directory`` (of type ``expected`` when given, else any registered type)."""
    directory = Path(directory)
    doc = read_result_doc(directory)
    cls = _resolve(str(doc.get("kind")), directory)
    if expected is not None and not issubclass(cls, expected):
        wanted = _NAMES.get(expected, expected.__name__)
        raise InputError(f"{directory}: holds a {doc.get('kind')} result, not a {wanted}")
    try:
        return _Reader(directory).decode(doc["state"])
    except (KeyError, TypeError, ValueError, pa.ArrowException, OSError) as exc:
        raise InputError(f"{directory}: saved result could not be read ({type(exc).__name__}: {exc})") from None


class SavedResult:
    """Mixin giving a registered result dataclass ``save`` and ``load`` (it writes ``summary``/``tables``)."""

    RESULT_NAME: ClassVar[str] = ""

    def summary(self) -> dict[str, Any]:  # pragma: no cover - every result overrides it
        raise NotImplementedError

    def tables(self) -> dict[str, pd.DataFrame]:  # pragma: no cover - every result overrides it
        raise NotImplementedError

    def save(self, directory: str | Path, *, overwrite: bool = True) -> Path:
        """Write this result as a result directory (see the module docstring)."""
        return save_result(self, directory, overwrite=overwrite)

    @classmethod
    def load(cls: type[T], directory: str | Path) -> T:
        """The result saved in ``directory``; an error if it holds another kind."""
        return load_result(directory, cls)


def _register_engine_types() -> None:
    from lee.snapshot.format import TableKind

    register("table-kind")(TableKind)
    declare("job-report", "lee.jobs.run:JobReport")
    declare("stream-run", "lee.evaluator.stream:StreamRun")
    declare("retrieval-run", "lee.evaluator.retrieval:RetrievalRun")


_register_engine_types()
