"""Writing a dataset from events that arrive in chunks, with memory bounded however long the log.

:class:`ChunkedDatasetWriter` is what every importer feeds. Each chunk is checked on arrival
against the format's rules (:func:`~lee.data.dataset.check_dataset`, on the chunk's events). While
the events fit under ``spill_rows`` they stay in memory and :func:`~lee.data.dataset.write_dataset`
writes them, exactly as for any in-memory dataset. Past that, every chunk goes to one staging
Parquet file beside the output (with its arrival order), and :meth:`finish` lets DuckDB sort it by
time under a memory limit (spilling to disk), streams the sorted rows into ``events.parquet`` and
computes the same statistics ``write_dataset`` would (cardinalities, time span, label rate): the
directory, ``dataset.json`` and the tables read back are identical either way
(tests/test_data_import.py checks it).

Both paths also complete the side tables: an id that occurs in the events but has no row in the
users (items) table gets a row with empty attributes, so every event can be joined; how many were
added is returned and stated by the import. Then both derive the users and items columns that the
events hold per id (:mod:`lee.data.entity_columns`: a field with role user or item whose value is
constant per id, within ``entity_tolerance``), counting the events in pandas or in DuckDB.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lee.data.dataset import Dataset, check_dataset, complete_spec, write_dataset
from lee.data.entity_columns import (
    ENTITY_TOLERANCE,
    Counter,
    FirstSeen,
    derive_entity_columns,
    pandas_counter,
    pandas_first_seen,
)
from lee.data.spec import SPEC_FILE, DatasetSpec, FieldType, TableSpec
from lee.errors import InputError
from lee.fileio import atomic_dir, atomic_write_text

DEFAULT_SPILL_ROWS = 500_000
DEFAULT_MEMORY_MB = 512
_SEQ = "__lee_seq"
_ROW_GROUP = 1 << 20      # rows per row group of the sorted events file (pyarrow's default size)


@dataclass
class WriteInfo:
    """What :meth:`ChunkedDatasetWriter.finish` did."""

    spec: DatasetSpec
    rows: int
    out_of_core: bool
    added_ids: dict[str, int] = field(default_factory=dict)   # side table -> ids added with empty attributes


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse a target before any work, with the rule :func:`lee.fileio.atomic_dir` applies at the end."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out}: directory exists and is not empty; pass --overwrite to replace it")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _events_only(spec: DatasetSpec) -> DatasetSpec:
    """The spec restricted to what one chunk of events can be checked against."""
    return spec.model_copy(update={"fields": tuple(f for f in spec.fields if f.table == "events")})


def check_chunk(chunk: pd.DataFrame, spec: DatasetSpec, *, where: str) -> None:
    """The format's rules on one chunk of events, except time order, which is the writer's job: an integer
    time column is checked as its sorted values (the same dtype, so the type rule still applies)."""
    ts = spec.roles.ts
    if ts in chunk.columns and chunk[ts].dtype.kind in "iu" and not chunk[ts].is_monotonic_increasing:
        chunk = chunk.assign(**{ts: np.sort(chunk[ts].to_numpy())})
    check_dataset(Dataset(spec=_events_only(spec), events=chunk), where=where)


def _complete_side(frame: pd.DataFrame | None, col: str, missing: np.ndarray) -> pd.DataFrame | None:
    if frame is None or not len(missing):
        return frame
    ids = pd.Series(np.sort(missing), dtype=frame[col].dtype)    # sorted: the same rows whichever path found them
    return pd.concat([frame, pd.DataFrame({col: ids})], ignore_index=True)


def _note_added(spec: DatasetSpec, added: dict[str, int]) -> DatasetSpec:
    """State in ``source.notes`` how many ids each side table gained (nothing when none)."""
    notes = [f"{n:,} {name[:-1]} id(s) occur in the events but not in the {name} table: added with empty attributes"
             for name, n in added.items() if n]
    if not notes:
        return spec
    return spec.model_copy(update={"source": {**spec.source, "notes": [*spec.source.get("notes", []), *notes]}})


def _id_kinds_agree(events_type: object, side: pd.Series, what: str) -> None:
    """Integer ids join only integer ids, text only text (``events_type``: a pandas dtype or an Arrow type)."""
    ints = pa.types.is_integer(events_type) if isinstance(events_type, pa.DataType) else \
        pd.api.types.is_integer_dtype(events_type)
    side_ints = pd.api.types.is_integer_dtype(side)
    if ints != side_ints:
        raise InputError(f"{what}: the ids are {'integers' if side_ints else 'text'} but the events' ids are "
                         f"{'integers' if ints else 'text'}; they cannot be joined")


class ChunkedDatasetWriter:
    """Events in chunks in, a dataset directory out (see the module docstring).

    Use as a context manager (the staging file is removed however it ends): :meth:`add` every
    chunk with the spec it should satisfy, then :meth:`finish` with the final spec and side tables.
    """

    def __init__(self, out: str | Path, *, overwrite: bool = False, spill_rows: int = DEFAULT_SPILL_ROWS,
                 memory_mb: int = DEFAULT_MEMORY_MB, threads: int | None = None,
                 entity_tolerance: float = ENTITY_TOLERANCE) -> None:
        threads = threads if threads is not None else min(os.cpu_count() or 2, 8)
        if spill_rows < 0 or memory_mb < 64 or threads < 1:
            raise InputError(f"spill_rows must be >= 0, memory_mb >= 64 and threads >= 1; got {spill_rows}, "
                             f"{memory_mb} and {threads}")
        if not 0.5 < entity_tolerance <= 1.0:
            raise InputError(f"entity_tolerance must lie in (0.5, 1] (the share of events that must hold their "
                             f"id's most frequent value); got {entity_tolerance}")
        self.entity_tolerance = entity_tolerance
        self.out = Path(out)
        self.overwrite = overwrite
        self.spill_rows = spill_rows
        self.memory_mb = memory_mb
        self.threads = threads
        _check_out(self.out, overwrite)
        self._buffer: list[pd.DataFrame] = []
        self._rows = 0
        self._staging: Path | None = None
        self._parts: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self._sample: pd.DataFrame | None = None

    # ------------------------------------------------------------------ feeding

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def out_of_core(self) -> bool:
        return self._staging is not None

    def add(self, chunk: pd.DataFrame, spec: DatasetSpec) -> None:
        """Check one chunk of events and keep it (in memory, or in the staging file once spilled)."""
        if not len(chunk):
            return
        check_chunk(chunk, spec, where=f"{self.out} (events {self._rows + 1:,}..{self._rows + len(chunk):,})")
        chunk = chunk.reset_index(drop=True)
        if self._sample is None:
            self._sample = chunk.iloc[:1].copy()
        if self._staging is not None:
            self._write_part(chunk)
        else:
            self._buffer.append(chunk)
            self._rows += len(chunk)
            if self._rows > self.spill_rows:
                self._spill()

    def _spill(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._staging = Path(tempfile.mkdtemp(prefix=f".staging-{self.out.name}-", dir=self.out.parent))
        buffered, self._buffer, self._rows = self._buffer, [], 0
        for chunk in buffered:
            self._write_part(chunk)

    def _write_part(self, chunk: pd.DataFrame) -> None:
        assert self._staging is not None
        if self._schema is None:
            self._schema = pa.Schema.from_pandas(chunk, preserve_index=False)
        try:
            table = pa.Table.from_pandas(chunk, schema=self._schema, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
            raise InputError(f"{self.out}: events {self._rows + 1:,}..{self._rows + len(chunk):,} do not have the "
                             f"column types of the first events ({exc})") from None
        table = table.append_column(_SEQ, pa.array(np.arange(self._rows, self._rows + len(chunk), dtype=np.int64)))
        if self._parts is None:
            self._parts = pq.ParquetWriter(self._staging / "events.parquet", table.schema, compression="lz4")
        self._parts.write_table(table)
        self._rows += len(chunk)

    # ------------------------------------------------------------------ finishing

    def finish(self, spec: DatasetSpec, users: pd.DataFrame | None = None,
               items: pd.DataFrame | None = None) -> WriteInfo:
        """Write the dataset directory; returns the spec as written and what was done."""
        if self._rows == 0:
            raise InputError(f"{self.out}: no events were read; nothing to write")
        r = spec.roles
        if self._staging is None:
            events = pd.concat(self._buffer, ignore_index=True) if len(self._buffer) > 1 else self._buffer[0]
            self._buffer = []
            added: dict[str, int] = {}
            for name, col in (("users", r.user_id), ("items", r.item_id)):
                side = users if name == "users" else items
                if side is None or col not in side.columns:
                    continue  # write_dataset names a missing id column
                _id_kinds_agree(events[col].dtype, side[col], f"{self.out}/{name}")
                ids = pd.unique(events[col].to_numpy())
                missing = ids[~pd.Series(ids).isin(side[col]).to_numpy()]
                added[name] = len(missing)
                if name == "users":
                    users = _complete_side(side, col, missing)
                else:
                    items = _complete_side(side, col, missing)
            entity = derive_entity_columns(spec, pandas_counter(events), users, items, dtypes=dict(events.dtypes),
                                           first_seen=pandas_first_seen(events, r.ts), tolerance=self.entity_tolerance)
            ds = write_dataset(self.out, entity.annotate(_note_added(spec, added)), events, entity.users, entity.items,
                               overwrite=self.overwrite)
            return WriteInfo(spec=ds.spec, rows=len(events), out_of_core=False, added_ids=added)
        return self._finish_out_of_core(spec, users, items)

    def _connect(self):
        import duckdb

        assert self._staging is not None
        con = duckdb.connect()
        con.execute(f"SET memory_limit = '{int(self.memory_mb)}MB'")
        con.execute(f"SET threads = {int(self.threads)}")
        con.execute(f"SET temp_directory = {_literal(str(self._staging / 'spill'))}")
        con.execute("SET preserve_insertion_order = false")
        con.execute("SET enable_progress_bar = false")   # stdout belongs to the caller (--json output)
        events = _literal(str(self._staging / "events.parquet"))
        con.execute(f"CREATE VIEW parts AS SELECT * FROM read_parquet({events})")
        return con

    def _finish_out_of_core(self, spec: DatasetSpec, users: pd.DataFrame | None,
                            items: pd.DataFrame | None) -> WriteInfo:
        assert self._parts is not None and self._schema is not None and self._sample is not None
        self._parts.close()
        self._parts = None
        r = spec.roles
        con = self._connect()
        try:
            added: dict[str, int] = {}
            for name, col in (("users", r.user_id), ("items", r.item_id)):
                side = users if name == "users" else items
                if side is None or col not in side.columns:
                    continue
                _id_kinds_agree(self._schema.field(col).type, side[col], f"{self.out}/{name}")
                con.register("side_ids", pa.table({"id": pa.array(side[col].to_numpy())}))
                missing = con.sql(f"SELECT DISTINCT p.{_quote(col)} AS id FROM parts p "
                                  f"ANTI JOIN side_ids s ON p.{_quote(col)} = s.id").to_arrow_table()
                con.unregister("side_ids")
                ids = missing.column("id").to_numpy(zero_copy_only=False)
                added[name] = len(ids)
                if name == "users":
                    users = _complete_side(side, col, ids)
                else:
                    items = _complete_side(side, col, ids)

            entity = derive_entity_columns(spec, self._duckdb_counter(con), users, items,
                                           dtypes=dict(self._sample.dtypes),
                                           first_seen=self._duckdb_first_seen(con, r.ts),
                                           tolerance=self.entity_tolerance)
            users, items = entity.users, entity.items
            spec = entity.annotate(_note_added(spec, added))
            # the same rules and the same completed spec as write_dataset, with the events statistics from DuckDB
            tables_spec = {"events": TableSpec(file="events.parquet", rows=self._rows)}
            if users is not None:
                tables_spec["users"] = TableSpec(file="users.parquet", rows=len(users))
            if items is not None:
                tables_spec["items"] = TableSpec(file="items.parquet", rows=len(items))
            try:
                spec = spec.model_copy(update={"tables": tables_spec})
                DatasetSpec.model_validate(spec.model_dump())
            except ValueError as exc:
                raise InputError(f"{self.out}: {exc}") from None
            sample = Dataset(spec=spec, events=self._sample, users=users, items=items, path=self.out)
            check_dataset(sample, where=str(self.out))
            completed = complete_spec(sample)
            stats = self._statistics(con, spec)
            fields = tuple(f.model_copy(update={"cardinality": stats["cardinality"][f.name]})
                           if f.name in stats["cardinality"] else f for f in completed.fields)
            tables = dict(completed.tables)
            tables["events"] = tables["events"].model_copy(update={"rows": self._rows})
            final = completed.model_copy(update={"fields": fields, "tables": tables,
                                                 "time_span": stats["time_span"], "label_rate": stats["label_rate"]})
            with atomic_dir(self.out, overwrite=self.overwrite) as tmp:
                self._write_sorted_events(con, spec, tmp / "events.parquet")
                for name, frame in (("users", users), ("items", items)):
                    if frame is not None:
                        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp / f"{name}.parquet",
                                       compression="zstd")
                atomic_write_text(tmp / SPEC_FILE, json.dumps(final.to_dict(), indent=2) + "\n")
        finally:
            con.close()
        return WriteInfo(spec=final, rows=self._rows, out_of_core=True, added_ids=added)

    @staticmethod
    def _duckdb_counter(con) -> Counter:
        """Events per (id, value) of the staged events, counted by DuckDB under its memory limit."""

        def count(id_col: str, col: str) -> pd.DataFrame:
            frame = con.sql(f"SELECT {_quote(id_col)} AS id, {_quote(col)} AS value, count(*) AS n FROM parts "
                            "GROUP BY ALL").df()
            frame["n"] = frame["n"].astype(np.int64)
            return frame

        return count

    @staticmethod
    def _duckdb_first_seen(con, ts_col: str) -> FirstSeen:
        """Every id in the order of its first event by (time, arrival): the order of the sorted events file."""

        def first(id_col: str) -> np.ndarray:
            i, t = _quote(id_col), _quote(ts_col)
            frame = con.sql(f"WITH f AS (SELECT {i} AS id, min({t}) AS t FROM parts GROUP BY ALL) "
                            f"SELECT f.id FROM f JOIN parts p ON p.{i} = f.id AND p.{t} = f.t "
                            f"GROUP BY f.id, f.t ORDER BY f.t, min(p.{_quote(_SEQ)})").df()
            return frame["id"].to_numpy()

        return first

    def _statistics(self, con, spec: DatasetSpec) -> dict:
        """Row count, time span, label rate and the events fields' cardinalities, computed by DuckDB."""
        r = spec.roles
        plain = [f for f in spec.fields if f.table == "events" and f.derived is None and f.type != FieldType.MULTI]
        multi = [f for f in spec.fields if f.table == "events" and f.derived is None and f.type == FieldType.MULTI]
        exprs = ["count(*)", f"min({_quote(r.ts)})", f"max({_quote(r.ts)})", f"sum({_quote(r.label)})"]
        exprs += [f"count(DISTINCT {_quote(f.source)})" for f in plain]
        (row,) = con.sql(f"SELECT {', '.join(exprs)} FROM parts").fetchall()
        n, lo, hi, positives = int(row[0]), int(row[1]), int(row[2]), row[3]
        cards = {f.name: int(v) for f, v in zip(plain, row[4:])}
        for f in multi:
            ((k,),) = con.sql(
                f"SELECT count(DISTINCT v) FROM (SELECT unnest(string_split(CAST({_quote(f.source)} AS VARCHAR), "
                f"{_literal(f.separator)})) AS v FROM parts WHERE {_quote(f.source)} IS NOT NULL) WHERE v <> ''"
            ).fetchall()
            cards[f.name] = int(k)
        return {"rows": n, "time_span": (lo, hi), "label_rate": float(positives) / n, "cardinality": cards}

    def _write_sorted_events(self, con, spec: DatasetSpec, path: Path) -> None:
        """The staged events sorted by (time, arrival order) — the stable sort write_dataset does — streamed to
        ``path`` with the in-memory path's Arrow schema (pandas metadata included)."""
        assert self._schema is not None
        reader = con.sql(f"SELECT * EXCLUDE ({_quote(_SEQ)}) FROM parts "
                         f"ORDER BY {_quote(spec.roles.ts)}, {_quote(_SEQ)}").to_arrow_reader(1 << 20)
        pending: list[pa.RecordBatch] = []
        with pq.ParquetWriter(path, self._schema, compression="zstd") as writer:
            for batch in reader:                 # DuckDB's batches are small: write row groups of ~1M rows
                pending.append(batch)
                if sum(b.num_rows for b in pending) >= _ROW_GROUP:
                    writer.write_table(pa.Table.from_batches(pending).cast(self._schema))
                    pending = []
            if pending:
                writer.write_table(pa.Table.from_batches(pending).cast(self._schema))

    # ------------------------------------------------------------------ cleanup

    def close(self) -> None:
        """Drop the staging file (the written dataset, if any, stays)."""
        if self._parts is not None:
            self._parts.close()
            self._parts = None
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
        self._buffer = []

    def __enter__(self) -> ChunkedDatasetWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
