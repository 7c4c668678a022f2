"""Feature-masking importance: how much AUC a trained proxy model loses when one input is masked.

Each downstream feature, each feature group and each injected representation table (and all of
them together) is masked in turn on held-out events — by default the stream's last window, which
the proxy scored but never trained on — and the AUC drop is measured:

* ``zero``        — the input's embedding (or representation vector) is replaced by zeros;
* ``mean``        — it is replaced by its mean over the evaluation events;
* ``permutation`` — its values are shuffled across the evaluation events (a group's columns with
  one shared shuffle, so their joint values stay together). For single columns this is exactly
  ``sklearn.inspection.permutation_importance``: same seeds, same cumulative shuffles, same
  numbers (tests/test_importance.py checks equality).

Every drop comes with an interval from the paired user-level bootstrap of :mod:`lee.evaluator.stats`,
combined with the spread over permutation repeats; the representation that the model relies on
most should rank first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from lee.errors import InputError
from lee.evaluator.data import DownstreamStream
from lee.evaluator.inject import Injection, inject
from lee.evaluator.models import ProxyConfig, ProxyCTR, RepLookup
from lee.evaluator.stats import RankedScores, paired_delta_ci
from lee.evaluator.stream import rep_rows_for, run_stream
from lee.results import SavedResult, register
from lee.snapshot import Snapshot


class MaskingMode(StrEnum):
    """How an input is masked: replaced by zeros, by its mean, or shuffled across events."""

    ZERO = "zero"
    MEAN = "mean"
    PERMUTATION = "permutation"


MODES: tuple[MaskingMode, ...] = tuple(MaskingMode)
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "user side": ("user", "activity"),
    "item side": ("item", "category", "advertiser"),
    "context": ("scenario", "position", "hour"),
}
REPRESENTATION = "representation"


@dataclass(frozen=True)
class MaskTarget:
    """What one mask hides: downstream field columns and/or injected tables (by position)."""

    name: str
    kind: str                      # "feature" | "group" | "representation"
    fields: tuple[int, ...] = ()
    tables: tuple[int, ...] = ()


def default_groups(stream: DownstreamStream) -> dict[str, tuple[str, ...]]:
    """Feature groups from the fields' declared roles: user side, item side, context (empty ones dropped).

    A stream without declared roles (built by hand) falls back to the planted world's groups when
    it has those fields, else to no groups.
    """
    if stream.roles:
        by = {"user side": "user", "item side": "item", "context": "context"}
        groups = {g: tuple(f for f in stream.fields if stream.roles.get(f) == role) for g, role in by.items()}
        return {g: members for g, members in groups.items() if members}
    if all(m in stream.fields for members in FEATURE_GROUPS.values() for m in members):
        return dict(FEATURE_GROUPS)
    return {}


def mask_targets(stream: DownstreamStream, injection: Injection | None = None, *,
                 groups: Mapping[str, Sequence[str]] | None = None) -> list[MaskTarget]:
    """Every field, every group (default: by declared role, :func:`default_groups`; fields a group
    names that the stream lacks are an error), every injected table and — with more than one
    table — all of them together."""
    if groups is None:
        groups = default_groups(stream)
    index = {f: k for k, f in enumerate(stream.fields)}
    out = [MaskTarget(f, "feature", fields=(k,)) for f, k in index.items()]
    for name, members in (groups or {}).items():
        unknown = [m for m in members if m not in index]
        if unknown:
            raise InputError(f"feature group {name!r} names unknown field(s) {', '.join(unknown)}; "
                             f"fields: {', '.join(stream.fields)}")
        out.append(MaskTarget(name, "group", fields=tuple(index[m] for m in members)))
    if injection is not None and injection.tables:
        tables = injection.tables
        if len(tables) > 1:
            out += [MaskTarget(f"{REPRESENTATION}:{t.kind.value}", "representation", tables=(k,))
                    for k, t in enumerate(tables)]
        out.append(MaskTarget(REPRESENTATION, "representation", tables=tuple(range(len(tables)))))
    return out


@register("importance")
@dataclass
class ImportanceResult(SavedResult):
    """AUC drop per masked target, ranked; ``drops[name]`` holds the per-repeat drops."""

    mode: str
    n_repeats: int
    level: float
    base_auc: float
    events: tuple[int, int]
    table: pd.DataFrame
    drops: dict[str, np.ndarray] = field(repr=False, default_factory=dict)

    def ranking(self, kind: str | None = None) -> list[str]:
        t = self.table if kind is None else self.table[self.table["kind"] == kind]
        return t.sort_values("drop", ascending=False)["target"].tolist()

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"importance": self.table}

    def summary(self) -> dict[str, Any]:
        return {"mode": self.mode, "n_repeats": self.n_repeats, "base_auc": self.base_auc,
                "events": list(self.events), "top": self.ranking()[:3],
                # the most important single input: a group masks several fields at once and may drop more
                "top_single": next(iter(self.table[self.table["kind"] != "group"]
                                        .sort_values("drop", ascending=False)["target"]), None)}


@torch.no_grad()
def _scores(model: ProxyCTR, x: torch.Tensor, rows: list[torch.Tensor], device: torch.device, *,
            field_override: dict[int, torch.Tensor] | None = None,
            rep_override: dict[int, torch.Tensor] | None = None, chunk: int = 65_536) -> np.ndarray:
    out = []
    for a in range(0, x.shape[0], chunk):
        b = min(a + chunk, x.shape[0])
        out.append(model(x[a:b].to(device), [r[a:b].to(device) for r in rows],
                         field_override=field_override, rep_override=rep_override).float().cpu())
    return torch.cat(out).numpy()


def _check_model(model: object, stream: DownstreamStream, injection: Injection | None) -> ProxyCTR:
    """``model`` itself, once it is known to be a ProxyCTR trained on ``stream`` with ``injection``'s tables."""
    if not isinstance(model, ProxyCTR):
        raise InputError(f"feature-masking importance needs a trained ProxyCTR; got {type(model).__name__}")
    cards = [e.num_embeddings for e in model.emb]
    if len(cards) != len(stream.fields) or any(n != c for n, c in zip(cards, stream.cardinalities)):
        raise InputError("the model was not trained on this stream: its field cardinalities "
                         f"{cards} differ from the stream's {list(stream.cardinalities)}")
    n_model = len(model.reps.dims) if model.reps is not None else 0
    n_inj = len(injection.tables) if injection is not None else 0
    if n_model != n_inj:
        raise InputError(f"the model takes {n_model} injected table(s) but {n_inj} were given; pass the "
                         "injection the model was trained with")
    return model


def masking_importance(model: nn.Module | None, stream: DownstreamStream, injection: Injection | None = None, *,
                       mode: str = "permutation", targets: Sequence[MaskTarget] | None = None,
                       groups: Mapping[str, Sequence[str]] | None = None,
                       events: tuple[int, int] | None = None, n_repeats: int = 5, n_boot: int = 100,
                       level: float = 0.95, seed: int = 0, device: torch.device | str = "cpu",
                       progress: bool = False) -> ImportanceResult:
    """AUC drop of ``model`` on ``events`` (default: the last tenth of the stream) for each target
    (default: every field, the ``groups`` — by declared role unless given — and the injected tables).

    Deterministic modes (``zero``, ``mean``) use one repeat whatever ``n_repeats`` says.
    """
    if mode not in MODES:
        raise InputError(f"unknown masking mode {mode!r}; choose one of {', '.join(MaskingMode)}")
    if n_repeats < 1 or n_boot < 2:
        raise InputError(f"n_repeats must be at least 1 and n_boot at least 2; got {n_repeats} and {n_boot}")
    model = _check_model(model, stream, injection)  # a run's ``model``: None unless kept, so checked here
    device = torch.device(device)
    lo, hi = events if events is not None else stream.window_bounds(10)[-1]
    if not 0 <= lo < hi <= len(stream):
        raise InputError(f"evaluation events [{lo}, {hi}) do not lie inside the stream of {len(stream)} events")
    y = stream.y[lo:hi].numpy()
    if not 0 < y.sum() < y.size:
        raise InputError(f"evaluation events [{lo}, {hi}) hold only one class ({int(y.sum())} clicks of {y.size}); "
                         "AUC is undefined there — choose a wider range")
    targets = list(targets) if targets is not None else mask_targets(stream, injection, groups=groups)
    if not targets:
        raise InputError("nothing to mask: no targets given")
    repeats = n_repeats if mode == "permutation" else 1
    x = stream.x[lo:hi].clone()
    rows = [r[lo:hi].clone() for r in rep_rows_for(stream, injection)]
    was_training = model.training
    model.eval()
    try:
        return _mask_all(model, stream, x, rows, y, targets, mode, repeats, n_boot, level, seed, device, progress,
                         lo, hi)
    finally:
        model.train(was_training)


def _mask_all(model: ProxyCTR, stream: DownstreamStream, x: torch.Tensor, rows: list[torch.Tensor], y: np.ndarray,
              targets: list[MaskTarget], mode: str, repeats: int, n_boot: int, level: float, seed: int,
              device: torch.device, progress: bool, lo: int, hi: int) -> ImportanceResult:
    base = _scores(model, x, rows, device)
    base_ranked = RankedScores(y, base)
    base_auc = base_ranked.auc()
    # sklearn's protocol: one seed drawn from random_state, reused for every column
    column_seed = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    users = stream.user_row[lo:hi]
    records, drops = [], {}
    for target in tqdm(targets, desc=f"masking ({mode})", disable=not progress):
        masked = _masked_scores(model, x, rows, target, mode, repeats, column_seed, device)
        ranked = [RankedScores(y, m) for m in masked]
        ci = paired_delta_ci([base_ranked] * repeats, ranked, users, n_boot=n_boot, level=level, seed=seed)
        per_repeat = np.array([base_auc - r.auc() for r in ranked])
        drops[target.name] = per_repeat
        records.append({"target": target.name, "kind": target.kind, "drop": -ci.delta,
                        "drop_std": float(per_repeat.std()), "ci_low": -ci.high, "ci_high": -ci.low,
                        "significant": ci.high < 0 or ci.low > 0})
    table = pd.DataFrame(records).sort_values("drop", ascending=False, ignore_index=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return ImportanceResult(mode, repeats, level, float(base_auc), (int(lo), int(hi)), table, drops)


def _masked_scores(model: ProxyCTR, x: torch.Tensor, rows: list[torch.Tensor], target: MaskTarget, mode: str,
                   repeats: int, column_seed: int, device: torch.device) -> list[np.ndarray]:
    columns = getattr(model, "_columns", [(k, k + 1) for k in range(x.shape[1])])
    if any(t >= len(rows) for t in target.tables) or any(f >= len(columns) for f in target.fields):
        raise InputError(f"mask target {target.name!r} refers to inputs the model does not have")
    if mode == "permutation":
        rs = np.random.RandomState(column_seed)
        idx = np.arange(x.shape[0])
        xp, rp = x.clone(), [r.clone() for r in rows]
        out = []
        for _ in range(repeats):
            rs.shuffle(idx)                      # cumulative, as sklearn does
            perm = torch.from_numpy(idx.copy())
            for k in target.fields:                  # a multi-valued field moves all its columns together
                a, b = columns[k]
                xp[:, a:b] = xp[perm, a:b]
            for t in target.tables:
                rp[t] = rp[t][perm]
            out.append(_scores(model, xp, rp, device))
        return out
    with torch.no_grad():
        field_override: dict[int, torch.Tensor] = {}
        for k in target.fields:
            emb = model.emb[k]
            assert isinstance(emb, nn.Embedding)
            dim = emb.embedding_dim
            field_override[k] = (torch.zeros(dim, device=device) if mode == "zero"
                                 else _field_mean(model, k, x, device))
        rep_override: dict[int, torch.Tensor] = {}
        for t in target.tables:
            assert model.reps is not None, "a table target on a model without injected tables"
            dim = model.reps.dims[t]
            rep_override[t] = (torch.zeros(dim, device=device) if mode == "zero"
                               else _table_mean(model.reps, t, rows, device))
    return [_scores(model, x, rows, device, field_override=field_override, rep_override=rep_override)]


def _field_mean(model: ProxyCTR, k: int, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Mean embedding of field ``k`` over the events ``x``."""
    return _chunked_mean(lambda a, b: model._embed(k, x[a:b].to(device)), x.shape[0])


def _table_mean(reps: RepLookup, t: int, rows: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Mean (projected) representation of injected table ``t`` over the events' ``rows``."""
    return _chunked_mean(lambda a, b: reps([r[a:b].to(device) for r in rows])[t], rows[t].shape[0])


def _chunked_mean(fn: Callable[[int, int], torch.Tensor], n: int, chunk: int = 65_536) -> torch.Tensor:
    """The column means of ``fn(a, b)`` (rows ``a:b``) over rows ``0:n``, ``chunk`` rows at a time."""
    total = fn(0, min(chunk, n)).sum(0)
    for a in range(chunk, n, chunk):
        total = total + fn(a, min(a + chunk, n)).sum(0)
    return total / n


def importance_for_snapshot(stream: DownstreamStream, snapshot: Snapshot | None, *, usage: str = "UR+IR",
                            fusion: str = "concat", proxy: ProxyConfig | None = None, seed: int = 0,
                            n_windows: int = 10, device: torch.device | str = "cpu", progress: bool = False,
                            **mask_options: Any) -> ImportanceResult:
    """Train the proxy with ``snapshot`` injected (``None``: the baseline, fields only) by streaming
    test-then-train, then mask on its last window — events it scored but never trained on."""
    injection = (inject(snapshot, usage, stream.user_ids, stream.item_ids, stream.user_row, stream.item_row)
                 if snapshot is not None else None)
    run = run_stream(stream, injection, fusion=fusion, cfg=proxy, seed=seed, n_windows=n_windows, device=device,
                     keep_model=True, progress=progress)
    return masking_importance(run.model, stream, injection, events=run.window_edges[-1], seed=seed, device=device,
                              progress=progress, **mask_options)
