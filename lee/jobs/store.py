"""The results store: an embedded SQLite file in WAL mode, safe to read while a job writes.

One row in ``runs`` per evaluated (snapshot, usage, fusion) under one config, with its metrics in
``metrics`` (per seed and window). A run is inserted in a single transaction once it is complete,
so a job killed mid-evaluation leaves no partial result and the next job simply redoes it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lee.errors import InputError
from lee.fileio import check_output_target, check_regular

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id        TEXT PRIMARY KEY,
    job           TEXT NOT NULL,
    unit_key      TEXT NOT NULL,          -- config hash + data hash + snapshot content + usage + fusion
    config_hash   TEXT NOT NULL,
    config_json   TEXT NOT NULL,
    data_hash     TEXT NOT NULL,
    variant       TEXT NOT NULL,
    event_time    TEXT,
    snapshot_path TEXT,
    checksums     TEXT NOT NULL,          -- JSON {table kind: sha256}
    usage         TEXT NOT NULL,
    fusion        TEXT NOT NULL,
    code_version  TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    finished_at   TEXT NOT NULL,
    seconds       REAL NOT NULL,
    auc REAL, auc_std REAL, gauc REAL, logloss REAL,
    baseline_auc REAL, delta_auc REAL, ci_low REAL, ci_high REAL, rela_impr REAL,
    verdict       TEXT NOT NULL,
    missing_events INTEGER NOT NULL DEFAULT 0,
    extra         TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX IF NOT EXISTS runs_unit ON runs(unit_key);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    model  TEXT NOT NULL,                 -- 'variant' or 'baseline'
    seed   INTEGER NOT NULL,
    window INTEGER NOT NULL,              -- 0 = overall, k >= 1 = test window k
    metric TEXT NOT NULL,
    value  REAL
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics(run_id);
CREATE TABLE IF NOT EXISTS gate_decisions (  -- release-gate decisions (analysis.gate), added without a version bump
    decision_id       TEXT PRIMARY KEY,
    decided_at        TEXT NOT NULL,
    candidate         TEXT NOT NULL,          -- variant@time
    candidate_variant TEXT NOT NULL,
    incumbent         TEXT NOT NULL,
    decision          TEXT NOT NULL,          -- ship, hold or roll back
    reasons           TEXT NOT NULL,          -- JSON list, one per rule that fired
    detail            TEXT NOT NULL DEFAULT '{}'  -- JSON: every rule's measure, threshold and outcome
);
"""


@dataclass(frozen=True)
class RunRecord:
    """Everything recorded about one evaluated unit."""

    run_id: str
    job: str
    unit_key: str
    config_hash: str
    config: dict[str, Any]
    data_hash: str
    variant: str
    event_time: str | None
    snapshot_path: str | None
    checksums: dict[str, str]
    usage: str
    fusion: str
    code_version: str
    started_at: str
    finished_at: str
    seconds: float
    summary: dict[str, float | str | int]
    metrics: list[tuple[str, int, int, str, float]]  # (model, seed, window, metric, value)
    extra: dict[str, Any]


class ResultsStore:
    """Open (and create if needed) a results database; ``readonly`` opens an existing one for reading only.

    Reading commands (``lee results``, ``lee report --db``, the dashboard) open it read-only: no
    schema statement, no insert, nothing created, so a store on a read-only file system (or one
    another process is writing) can always be read. A writer creates the whole schema in one
    transaction, so a reader never sees half of it. SQLite's errors are reported as what they are:
    a full disk or a read-only file system is an ``OSError`` naming the file, a file that is not
    a results database an ``InputError``.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            try:
                check_regular(self.path)  # never create it, never open a FIFO or a device as one
            except FileNotFoundError:
                raise InputError(f"{self.path}: no results store here (run `lee evaluate --config JOB.toml` "
                                 "first)") from None
            with self._connect() as con:
                if con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                    raise InputError(f"{self.path}: an empty results store (nothing recorded yet, or a job is "
                                     "creating it right now); run `lee evaluate --config JOB.toml` first")
                row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        else:
            check_output_target(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as con:
                con.executescript(f"BEGIN IMMEDIATE;\n{_SCHEMA}\nINSERT OR IGNORE INTO meta VALUES "
                                  f"('schema_version', '{SCHEMA_VERSION}');\nCOMMIT;")
                row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        got = row[0] if row else None
        if str(got) != str(SCHEMA_VERSION):
            raise InputError(f"{self.path}: results schema version {got}; this workbench reads {SCHEMA_VERSION}")

    def _open(self) -> sqlite3.Connection:
        if not self.readonly:
            return sqlite3.connect(self.path, timeout=30.0)
        uri = "file:" + urllib.parse.quote(str(self.path.absolute()))
        con = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=30.0)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()  # SQLite opens lazily: probe now
            return con
        except sqlite3.OperationalError:
            con.close()
            # a WAL database on a read-only file system cannot get its -shm file; with no -wal file
            # beside it every committed row is in the main file, which is then read as it stands
            if os.path.exists(f"{self.path}-wal"):
                raise
            return sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True, timeout=30.0)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            con = self._open()
        except sqlite3.Error as exc:
            raise _store_error(self.path, exc, self.readonly) from None
        try:
            if self.readonly:
                con.execute("PRAGMA query_only=ON")
            else:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA foreign_keys=ON")
            with con:  # one transaction: committed on success, rolled back on any error
                yield con
        except (sqlite3.Error, pd.errors.DatabaseError) as exc:
            raise _store_error(self.path, exc, self.readonly) from None
        finally:
            con.close()

    def has_unit(self, unit_key: str) -> bool:
        with self._connect() as con:
            return con.execute("SELECT 1 FROM runs WHERE unit_key = ?", (unit_key,)).fetchone() is not None

    def add(self, rec: RunRecord) -> None:
        """Insert one run and all its metrics atomically."""
        s = rec.summary
        with self._connect() as con:
            con.execute(
                "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (rec.run_id, rec.job, rec.unit_key, rec.config_hash, json.dumps(rec.config, sort_keys=True),
                 rec.data_hash, rec.variant, rec.event_time, rec.snapshot_path, json.dumps(rec.checksums),
                 rec.usage, rec.fusion, rec.code_version, rec.started_at, rec.finished_at, rec.seconds,
                 s.get("auc"), s.get("auc_std"), s.get("gauc"), s.get("logloss"), s.get("baseline_auc"),
                 s.get("delta_auc"), s.get("ci_low"), s.get("ci_high"), s.get("rela_impr"), s.get("verdict"),
                 int(s.get("missing_events", 0)), json.dumps(rec.extra, default=str)),
            )
            con.executemany("INSERT INTO metrics VALUES (?,?,?,?,?,?)", [(rec.run_id, *m) for m in rec.metrics])

    def add_gate_decision(self, *, decision_id: str, decided_at: str, candidate: str, candidate_variant: str,
                          incumbent: str, decision: str, reasons: list[str], detail: dict[str, Any]) -> None:
        """Record one release-gate decision (one transaction)."""
        with self._connect() as con:
            con.execute("INSERT INTO gate_decisions VALUES (?,?,?,?,?,?,?,?)",
                        (decision_id, decided_at, candidate, candidate_variant, incumbent, decision,
                         json.dumps(reasons), json.dumps(detail, default=str)))

    def gate_decisions(self, *, latest_per_variant: bool = False) -> pd.DataFrame:
        """Recorded gate decisions, newest first (with ``latest_per_variant``: the newest per candidate variant)."""
        with self._connect() as con:
            df = pd.read_sql_query("SELECT decision_id, decided_at, candidate, candidate_variant, incumbent, decision, "
                                   "reasons, detail FROM gate_decisions ORDER BY decided_at DESC, decision_id", con)
        df["reasons"] = [json.loads(r) for r in df["reasons"]]
        df["detail"] = [json.loads(d) for d in df["detail"]]
        if latest_per_variant:
            df = df.drop_duplicates("candidate_variant", keep="first").reset_index(drop=True)
        return df

    def runs(self, *, job: str | None = None) -> pd.DataFrame:
        """All runs (newest first), without the bulky config column."""
        q = ("SELECT run_id, job, variant, event_time, usage, fusion, auc, baseline_auc, delta_auc, ci_low, "
             "ci_high, rela_impr, verdict, gauc, logloss, missing_events, seconds, finished_at, config_hash, "
             "code_version, snapshot_path, extra FROM runs")
        args: tuple[Any, ...] = ()
        if job is not None:
            q += " WHERE job = ?"
            args = (job,)
        with self._connect() as con:
            df = pd.read_sql_query(q + " ORDER BY finished_at DESC, run_id", con, params=args)
        cov = [_coverage(e) for e in df["extra"]]
        df["coverage_events"] = [c[0] for c in cov]
        df["coverage_ids"] = [c[1] for c in cov]
        for key in ("auc_pooled", "calibration"):  # secondary metrics, recorded in extra
            df[key] = [_extra_number(e, key) for e in df["extra"]]
        return df.drop(columns="extra")

    def run(self, run_id: str) -> dict[str, Any]:
        """One run's full record; ``run_id`` may be a unique prefix."""
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            rows = con.execute("SELECT * FROM runs WHERE run_id LIKE ?", (run_id + "%",)).fetchall()
            if not rows:
                raise InputError(f"{self.path}: no run with id {run_id!r}")
            if len(rows) > 1:
                raise InputError(f"{self.path}: run id prefix {run_id!r} is ambiguous ({len(rows)} runs match)")
            doc = dict(rows[0])
            doc["config"] = json.loads(doc.pop("config_json"))
            doc["checksums"] = json.loads(doc["checksums"])
            doc["extra"] = json.loads(doc["extra"])
            doc["metrics"] = pd.read_sql_query("SELECT model, seed, window, metric, value FROM metrics "
                                               "WHERE run_id = ? ORDER BY model, seed, window, metric", con,
                                               params=(doc["run_id"],))
        return doc

    def windows(self, run_ids: list[str]) -> pd.DataFrame:
        """Per-window test AUC of the given runs, averaged over seeds: run_id, variant, usage,
        fusion, model ('variant' | 'baseline'), window (1-based), auc — the fluctuation curves."""
        if not run_ids:
            return pd.DataFrame(columns=["run_id", "variant", "usage", "fusion", "model", "window", "auc"])
        marks = ",".join("?" * len(run_ids))
        q = (f"SELECT m.run_id, r.variant, r.usage, r.fusion, m.model, m.window, AVG(m.value) AS auc "
             f"FROM metrics m JOIN runs r USING (run_id) WHERE m.metric = 'auc' AND m.window >= 1 "
             f"AND m.run_id IN ({marks}) GROUP BY m.run_id, m.model, m.window ORDER BY m.run_id, m.model, m.window")
        with self._connect() as con:
            return pd.read_sql_query(q, con, params=tuple(run_ids))

    def compare(self, *, usage: str | None = None, fusion: str | None = None, job: str | None = None) -> pd.DataFrame:
        """Latest run per (variant, usage, fusion), ranked by ΔAUC."""
        df = self.runs(job=job)
        if usage:
            df = df[df["usage"] == usage]
        if fusion:
            df = df[df["fusion"] == fusion]
        if df.empty:
            return df
        latest = df.sort_values(["event_time", "finished_at"]).groupby(["variant", "usage", "fusion"]).tail(1)
        ranked = latest.sort_values(["usage", "fusion", "delta_auc"], ascending=[True, True, False])
        return ranked.reset_index(drop=True)


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path.parent if not path.exists() else path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def _store_error(path: Path, exc: BaseException, readonly: bool) -> Exception:
    """SQLite's error as what it is: a full disk, a read-only file system, a busy lock or an I/O
    error is an ``OSError`` (exit status 1), a file that is not a results database an ``InputError``."""
    cause = exc.__cause__ if isinstance(exc, pd.errors.DatabaseError) and exc.__cause__ is not None else exc
    name = str(getattr(cause, "sqlite_errorname", "") or "")
    msg = " ".join(str(cause).split())
    if name == "SQLITE_FULL" or "disk is full" in msg:
        return OSError(f"{path}: the disk is full, so the results store cannot be written ({msg}); free some "
                       "space and run the command again")
    if name.startswith("SQLITE_READONLY") or "readonly database" in msg:
        return OSError(f"{path}: the results store is read-only here (a read-only file system or file "
                       f"permissions: {msg}); reading commands open it read-only, `lee evaluate` needs to write it")
    if name.startswith("SQLITE_CANTOPEN") or "unable to open database" in msg:
        if _read_only_fs(path) and not readonly:
            return OSError(f"{path}: the results store is on a read-only file system ({msg}); reading commands "
                           "open it read-only, `lee evaluate` needs to write it")
        how = "read" if readonly else "open or create"
        return OSError(f"{path}: cannot {how} the results store ({msg}); check that the file and its "
                       f"directory exist{'' if readonly else ' and are writable'}")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in msg:
        return OSError(f"{path}: the results store stayed locked by another process for 30 s ({msg})")
    if name.startswith("SQLITE_IOERR") or "disk I/O error" in msg:
        return OSError(f"{path}: I/O error while using the results store ({msg})")
    if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or "not a database" in msg or "malformed" in msg:
        return InputError(f"{path}: not a LEE results database ({msg})")
    if "no such table" in msg or "no such column" in msg:
        return InputError(f"{path}: not a LEE results database, or one written before this version's tables "
                          f"existed ({msg}); open it once with `lee evaluate` to bring it up to date")
    return InputError(f"{path}: results store error ({msg})")


def _extra_number(extra: str | None, key: str) -> float:
    """A number recorded in a run's extra JSON (NaN for runs recorded without it)."""
    try:
        value = json.loads(extra or "{}").get(key)
    except (json.JSONDecodeError, AttributeError):
        return float("nan")
    return float(value) if isinstance(value, (int, float)) else float("nan")


def _coverage(extra: str | None) -> tuple[float, float]:
    """Lowest event and id coverage over a run's injected tables (NaN for runs recorded without it)."""
    try:
        missing = json.loads(extra or "{}").get("missing", {})
    except (json.JSONDecodeError, AttributeError):
        return float("nan"), float("nan")
    ev = [m["event_coverage"] for m in missing.values() if isinstance(m, dict) and "event_coverage" in m]
    ids = [m["id_coverage"] for m in missing.values() if isinstance(m, dict) and "id_coverage" in m]
    return (min(ev) if ev else float("nan")), (min(ids) if ids else float("nan"))
