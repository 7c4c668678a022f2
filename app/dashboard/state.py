"""What the pages share: the data sources chosen in the sidebar and cached calls into lee/ and analysis/.

Nothing here computes a number: every function wraps one call of the engine in a Streamlit cache,
keyed so that new snapshots or new results invalidate it, and turns a user-facing error into a
message on the page instead of a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import streamlit as st

from lee.errors import InputError, LeeError
from lee.results import RESULT_FILE

REPO = Path(__file__).resolve().parents[2]
DEFAULT_WORLD = REPO / "fixtures" / "tiny" / "world"
DEFAULT_ROOT = REPO / "fixtures" / "tiny" / "snapshots"
DEFAULT_DB = REPO / "runs" / "dashboard" / "results.sqlite"

T = TypeVar("T")


@dataclass(frozen=True)
class Sources:
    """Where the pages read from. ``run``: a finished run directory (``lee demo --out DIR`` or any
    directory holding ``analyses/`` and ``lee/`` saved results); its results are opened, not recomputed."""

    world: Path
    root: Path
    db: Path
    sweep: Path | None
    run: Path | None = None

    @property
    def saved_suite(self) -> Path | None:
        """The saved analysis suite of the finished run, if there is one."""
        if self.run is None:
            return None
        for cand in (self.run / "analyses", self.run / "report" / "data" / "suite", self.run):
            if (cand / RESULT_FILE).is_file():
                return cand
        return None

    @property
    def saved_lee(self) -> Path | None:
        """The saved LEE comparison of the finished run, if there is one."""
        if self.run is None:
            return None
        for cand in (self.run / "lee", self.run / "report" / "data" / "lee"):
            if (cand / RESULT_FILE).is_file():
                return cand
        return None


ROOTS_ENV = "LEE_DASHBOARD_ROOTS"
"""Extra directories (separated by ``os.pathsep``) whose files the sidebar may open."""


def _leave_pages_directory_mode() -> None:
    """Streamlit takes a ``pages/`` folder beside main.py for an old-style multipage app until
    main.py has run once in the server process: a first request for a page URL (``/lee``) would run
    that page alone, without main.py's navigation. Switch to main.py's navigation and rerun."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # pragma: no cover - a Streamlit without it has no pages-folder mode either
        return
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


_leave_pages_directory_mode()


def _cli_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--run", type=Path, default=None)
    p.add_argument("--world", type=Path, default=None)
    p.add_argument("--root", type=Path, default=None)
    p.add_argument("--db", type=Path, default=None)
    p.add_argument("--sweep", type=Path, default=None)
    args, _ = p.parse_known_args(sys.argv[1:])
    return args


def allowed_roots() -> list[Path]:
    """Where the sidebar may read: the repository, every path given on the command line
    (``--run``, ``--world``, ``--root``, ``--db``, ``--sweep``) and the directories of
    ``$LEE_DASHBOARD_ROOTS``. Anyone who reaches the dashboard can type a path; nothing outside
    these is ever opened (or created)."""
    args = _cli_args()
    given = [args.run, args.world, args.root, args.db, args.sweep]
    extra = [Path(p) for p in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    return [p.resolve() for p in [REPO, *[g for g in given if g is not None], *extra]]


def is_allowed(path: Path, roots: list[Path] | None = None) -> bool:
    """True when ``path`` (links resolved) is one of ``roots`` or lies under one."""
    real = Path(path).resolve()
    return any(real == r or r in real.parents for r in (roots if roots is not None else allowed_roots()))


def _cli_defaults() -> Sources:
    """``streamlit run app/dashboard/main.py -- [--run DIR] [--world W --root R --db D --sweep S]``.

    ``--run DIR`` (a finished run such as the demo's output) sets the others to ``DIR/world``,
    ``DIR/snapshots`` and ``DIR/results.sqlite`` unless they are given too.
    """
    args = _cli_args()
    run = args.run
    return Sources(args.world or (run / "world" if run else DEFAULT_WORLD),
                   args.root or (run / "snapshots" if run else DEFAULT_ROOT),
                   args.db or (run / "results.sqlite" if run else DEFAULT_DB), args.sweep, run)


def sidebar_sources() -> Sources:
    """Data-source inputs in the sidebar (defaults: the command line, else the embedded sample).

    The chosen values live under their own session keys, so they survive switching pages
    (Streamlit drops a widget's state when a page that does not draw it runs).
    """
    d = _cli_defaults()
    defaults = {"src_run": str(d.run or ""), "src_world": str(d.world), "src_root": str(d.root),
                "src_db": str(d.db), "src_sweep": str(d.sweep or "")}
    labels = {"src_run": "Finished run directory (optional)", "src_world": "Dataset (or world) directory",
              "src_root": "Snapshot root", "src_db": "LEE results store", "src_sweep": "Layer-sweep CSV (optional)"}
    values = {}
    roots = allowed_roots()
    with st.sidebar:
        st.markdown("### Data")
        for key, label in labels.items():
            keep = f"kept_{key}"
            st.session_state.setdefault(keep, defaults[key])
            values[key] = st.text_input(label, st.session_state[keep], key=key)
            if values[key].strip() and not is_allowed(Path(values[key].strip()), roots):
                st.error(f"{values[key].strip()}: outside the directories this dashboard may read (the repository, "
                         f"the paths it was started with, ${ROOTS_ENV}); using {defaults[key] or 'none'}")
                values[key] = defaults[key]
            st.session_state[keep] = values[key]
    sweep = values["src_sweep"].strip()
    run = values["src_run"].strip()
    return Sources(Path(values["src_world"]), Path(values["src_root"]), Path(values["src_db"]),
                   Path(sweep) if sweep else None, Path(run) if run else None)


def require_snapshots(res: Any, src: Sources) -> None:
    """Stop the page with a message when the root holds no snapshots."""
    if not res.health:
        st.info(f"{src.root} holds no snapshots yet.")
        st.stop()


def preferred(names: list[str]) -> int:
    """The default variant to show: the trained upstream model, else the oracle, else the first."""
    for name in ("upstream", "oracle"):
        if name in names:
            return names.index(name)
    return 0


def guarded(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn``; a workbench error becomes a message on the page and stops this page's run."""
    try:
        return fn(*args, **kwargs)
    except LeeError as exc:
        st.error(str(exc))
        st.stop()
        raise  # unreachable: st.stop raises


def _root_key(root: str) -> tuple:
    """Changes whenever a snapshot is added to the root (cache key)."""
    from lee.snapshot.store import find_snapshot_dirs

    return tuple(str(d.relative_to(root)) for d in find_snapshot_dirs(root))


def _file_key(path: str) -> float:
    p = Path(path)
    wal = p.with_name(p.name + "-wal")
    return max((q.stat().st_mtime for q in (p, wal) if q.exists()), default=0.0)


@st.cache_resource(show_spinner="Loading the dataset…")
def _world(path: str):
    from lee.data.dataset import Dataset

    return Dataset.open(path)


def world(src: Sources):
    """The dataset (a world opens as one) of the sidebar's data directory."""
    return guarded(_world, str(src.world))


@st.cache_resource(show_spinner="Running every analysis on the snapshots…")
def _suite(world_path: str, root: str, key: tuple, maps: tuple[str, ...]):
    from analysis.suite import SuiteConfig, run_suite

    return run_suite(_world(world_path), root, config=SuiteConfig(map_methods=maps, n_boot=200, map_place_rest=True),
                     log=lambda *_: None)


@st.cache_resource(show_spinner="Opening the finished run…")
def _saved(path: str, key: float):
    from lee.results import load_result

    return load_result(path)


def _saved_key(path: Path) -> float:
    return (path / RESULT_FILE).stat().st_mtime


def suite(src: Sources, maps: tuple[str, ...] = ("pca",)):
    """The analysis suite: opened from a finished run when there is one, else run on the sources."""
    saved = src.saved_suite
    if saved is not None:
        return guarded(_saved, str(saved), _saved_key(saved))
    from lee.snapshot import SnapshotStore

    store = guarded(SnapshotStore, src.root)
    for problem in store.problems():  # never silently skipped: the page names each one
        st.warning(problem.skipped())
    world(src)
    return guarded(_suite, str(src.world), str(src.root), _root_key(str(src.root)), maps)


def from_saved_run(src: Sources) -> bool:
    """True when the pages show a finished run's saved results (nothing is recomputed)."""
    return src.saved_suite is not None


@st.cache_data(show_spinner=False)
def _lee(db: str, key: float, sweep_frame: pd.DataFrame | None):
    from analysis.lee_results import lee_comparison

    return lee_comparison(db, sweep=sweep_frame)


def lee_result(src: Sources):
    """The LEE ranking (a finished run's saved one, else the results store's), or None without results."""
    saved = src.saved_lee
    if saved is not None:
        return guarded(_saved, str(saved), _saved_key(saved))
    if not src.db.is_file():
        return None
    return guarded(_lee, str(src.db), _file_key(str(src.db)), sweep(src))


@st.cache_data(show_spinner=False)
def _sweep(path: str, key: float) -> pd.DataFrame:
    from lee.evaluator.sweep import read_sweep_figure

    return read_sweep_figure(path)


def sweep(src: Sources) -> pd.DataFrame | None:
    if src.sweep is None:
        return None
    if not src.sweep.is_file():
        st.warning(f"{src.sweep}: no layer-sweep CSV there (write one with `lee sweep --table FILE`)")
        return None
    try:
        return _sweep(str(src.sweep), _file_key(str(src.sweep)))
    except LeeError as exc:  # the engine's message names the file and what is wrong with it
        st.warning(str(exc))
        return None


@st.cache_resource(show_spinner="Training the proxy and masking every input…")
def _importance(world_path: str, root: str, key: tuple, variant: str, mode: str, repeats: int):
    from analysis.importance import importance_for_snapshot
    from lee.evaluator.data import stream_from_dataset
    from lee.snapshot import SnapshotStore

    stream = stream_from_dataset(_world(world_path))
    return importance_for_snapshot(stream, SnapshotStore(root).latest(variant), mode=mode, n_repeats=repeats,
                                   n_boot=100)


def importance(src: Sources, variant: str, mode: str, repeats: int):
    return guarded(_importance, str(src.world), str(src.root), _root_key(str(src.root)), variant, mode, repeats)


@st.cache_data(show_spinner="Bootstrapping the lift…")
def _segments(world_path: str, by: str, home_col: str, other_col: str, threshold: int, seed: int):
    from analysis.segments import segment_lift
    from lee.world.ab_log import generate_ab_log

    ds = _world(world_path)
    if ds.world is None:
        raise InputError(f"{world_path}: the planted A/B log needs a planted world; load your own A/B log instead")
    log = generate_ab_log(ds.world, seed=seed)
    return segment_lift(log, by=by, home_col=home_col, other_col=other_col, other_threshold=threshold,
                        n_boot=1000, seed=seed)


def segments(src: Sources, by: str, home_col: str, other_col: str, threshold: int, seed: int = 0):
    world(src)
    return guarded(_segments, str(src.world), by, home_col, other_col, threshold, seed)
