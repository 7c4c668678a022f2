"""Proxy CTR models: a light downstream baseline and the same model with representations injected.

Fusion modes (each from the seed paper), all behind :class:`Fusion`:

* ``concat`` — each injected table is linearly projected to one more feature field;
* ``gate``   — the field embeddings are gated, ``E' = E ⊙ σ(r·M)``, by the representation ``r``
  (scaled by 2, with ``M`` initialised near zero, so that the gate starts as the identity);
* ``iim``    — an isomorphic interaction module: the upstream mix tower's structure (cross network,
  MLP, head) rebuilt over the representations with fresh weights, as an expert whose logit is
  added to the downstream model's, times a learned scale that starts at 0.1.

The baseline of every mode is the same model with a stand-in for the representation: a learned
constant (:func:`lee.evaluator.inject.null_injection`) under ``concat`` and ``gate``, so the extra
field or gate is there too and a variant adds inputs, never capacity; under ``iim`` a random code
per id (:func:`lee.evaluator.inject.random_code_injection`), because the expert is a second model
of its own that turns any per-id code into per-id effects, so a variant is credited only for what
it carries beyond identity. Either way a random snapshot is "no different" at the nominal rate
(``benchmarks/null_calibration.py``).

The ``retrieval`` mode (a two-tower retriever whose towers add adapters over the representations
to id embeddings) lives in :mod:`lee.evaluator.retrieval`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from lee.config import ConfigModel
from lee.errors import ConfigError
from lee.evaluator.inject import Injection
from lee.nn.layers import MLP, CrossNetV2
from lee.nn.optim import split_params  # noqa: F401 - re-exported for benchmarks


class FusionMode(StrEnum):
    """How representations enter the downstream model (``retrieval`` is a two-tower model of its own)."""

    CONCAT = "concat"
    GATE = "gate"
    IIM = "iim"
    RETRIEVAL = "retrieval"


FUSIONS: tuple[FusionMode, ...] = (FusionMode.CONCAT, FusionMode.GATE, FusionMode.IIM)  # the ones ProxyCTR builds

_Width = Annotated[int, Field(gt=0)]


class ProxyConfig(ConfigModel):
    """Sizes and optimiser settings of the proxy CTR model (kept light on purpose).

    The defaults were chosen so that the baseline proxy, trained once through the stream, keeps up
    with a one-hot logistic regression refit on all earlier windows (``benchmarks/proxy_strength.py``):
    a first-order weight per field value (``linear``: the proxy contains a logistic regression); a
    factorisation machine's pairwise term over the field embeddings (``fm``, entering times a
    learned scale that starts at 0, so it grows only where it helps: +0.007 window AUC on the
    planted world's 8 fields, nothing lost on a 39-field Criteo-style log where a fixed FM term cost
    0.06); every embedding table trained sparsely with Adagrad (only the rows a batch uses move, with
    per-row steps that shrink as a value is seen more often: rare values neither stall nor jitter;
    dense Adam on a 5,000-value field kept moving rows no batch used); batches of 256 (at least
    ``min_steps_per_window`` steps per window). Adagrad's step (``sparse_lr``) is picked from the
    window size unless given: small windows need larger steps to learn in one pass
    (:meth:`sparse_lr_for`); what was picked is recorded with every run. More passes per window
    (``epochs_per_window``) overfit: 2 passes cost 0.06 AUC on the Criteo-style log.
    """

    config_name: ClassVar[str] = "proxy config"

    emb_dim: int = Field(16, gt=0)
    cross_layers: int = Field(2, ge=0)
    mlp_hidden: tuple[_Width, ...] = (64, 32)
    batch_size: int = Field(256, gt=0)
    lr: float = Field(3e-3, gt=0)                     # Adam, dense parameters (cross network, MLP, fusion)
    sparse_lr: float | None = Field(None, gt=0)       # embedding tables; None: picked from the window size
    sparse_optimizer: Literal["adagrad", "adam"] = "adagrad"   # for the embedding tables (adam: SparseAdam)
    linear: bool = True                               # a first-order (logistic-regression) weight per field value
    fm: bool = True                                   # a factorisation machine's pairwise term (learned scale from 0)
    iim_hidden: tuple[_Width, ...] = (32,)
    epochs_per_window: int = Field(1, ge=1)
    rep_dropout: float = Field(0.0, ge=0, lt=1)       # dropout on the injected representations (training only)
    min_steps_per_window: int = Field(20, ge=1)       # small windows get smaller batches, so the model still learns
    fusion_l2: float = Field(0.0, ge=0)

    def batch_for(self, window_events: int) -> int:
        """The batch size for a window: ``batch_size``, shrunk so a window gives at least ``min_steps``."""
        return max(32, min(self.batch_size, -(-window_events // self.min_steps_per_window)))

    def sparse_lr_for(self, window_events: int) -> float:
        """The embedding tables' step size: ``sparse_lr`` if given, else ``0.1 * sqrt(10,000 / events
        per window)`` clipped to [0.1, 0.3] (0.1 from 10,000 events a window up, 0.18 at 3,000).

        Measured with ``benchmarks/proxy_strength.py`` (3 seeds): MovieLens, 3,000 events a window,
        mean window AUC 0.6489 at 0.2 vs 0.6466 at 0.1; the planted world and a Criteo-style log,
        10,000 a window, 0.6550 / 0.7806 at 0.1 vs 0.6511 / 0.7704 at 0.2.
        """
        if self.sparse_lr is not None:
            return self.sparse_lr
        if self.sparse_optimizer == "adam":
            return 0.1
        return float(min(0.3, max(0.1, 0.1 * (10_000 / max(window_events, 1)) ** 0.5)))


class RepLookup(nn.Module):
    """Frozen representation matrices with a learned default vector for ids a snapshot lacks."""

    def __init__(self, injection: Injection, dropout: float = 0.0) -> None:
        super().__init__()
        self.dims = [t.dim for t in injection.tables]
        for k, t in enumerate(injection.tables):
            self.register_buffer(f"table{k}", t.matrix.clone(), persistent=False)
        self.defaults = nn.ParameterList(nn.Parameter(torch.zeros(d)) for d in self.dims)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, rows: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for k, r in enumerate(rows):
            table = getattr(self, f"table{k}")
            missing = (r == table.shape[0] - 1).unsqueeze(1)                             # (B, 1)
            out.append(self.dropout(torch.where(missing, self.defaults[k], table[r])))   # (B, d_k)
        return out


class Fusion(nn.Module):
    """How representations enter the proxy model: extra fields, a field gate, and/or an expert logit."""

    extra_fields: int = 0

    def fields(self, reps: list[torch.Tensor]) -> list[torch.Tensor]:
        return []

    def gate(self, emb: torch.Tensor, reps: list[torch.Tensor]) -> torch.Tensor:
        return emb

    def expert(self, reps: list[torch.Tensor]) -> torch.Tensor | None:
        return None


class ConcatFusion(Fusion):
    def __init__(self, dims: list[int], emb_dim: int) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Linear(d, emb_dim) for d in dims)
        # A learned per-table scale that starts below 1 (ReZero-style): the variant starts close to
        # the baseline and lets the representation in only as far as the loss asks for it, so a
        # pure-noise table does not perturb every cross term from step one. Not too small: the cross
        # network's products of two tables scale with its square, and with Adam's dense step (3e-3)
        # a scale of 0.1 or 0.3 never grew on a 40k-event log whose clicks are a pure user x item
        # factor product (fixtures/examples/shop: ΔAUC +0.000 at 0.1 and 0.3, +0.043 at 0.5, +0.062
        # at 1.0), while 1.0 let a random table cost the small planted world 0.005 AUC (seed 0).
        self.scale = nn.Parameter(torch.full((len(dims),), 0.5))
        self.extra_fields = len(dims)

    def fields(self, reps: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.scale[k] * p(r) for k, (p, r) in enumerate(zip(self.proj, reps))]  # each (B, D)


class GateFusion(Fusion):
    def __init__(self, dims: list[int], n_fields: int, emb_dim: int) -> None:
        super().__init__()
        self.m = nn.Linear(sum(dims), n_fields * emb_dim, bias=False)
        nn.init.normal_(self.m.weight, std=0.01)

    def gate(self, emb: torch.Tensor, reps: list[torch.Tensor]) -> torch.Tensor:
        g = 2.0 * torch.sigmoid(self.m(torch.cat(reps, dim=1)))  # (B, F*D), 1 at init
        return emb * g.view_as(emb)                        # (B, F, D)


class IIMFusion(Fusion):
    def __init__(self, dims: list[int], cfg: ProxyConfig) -> None:
        super().__init__()
        # the upstream mix tower's input: [u, i, u*i] when a user and an item table of one dim are given
        self.product = len(dims) == 2 and dims[0] == dims[1]
        in_dim = sum(dims) + (dims[0] if self.product else 0)
        self.cross = CrossNetV2(in_dim, cfg.cross_layers)
        self.mlp = MLP(in_dim, cfg.iim_hidden)
        self.head = nn.Linear(self.mlp.out_dim, 1)
        # the expert's logit enters times a learned scale that starts at 0.1, as concat's projection:
        # at full scale a fresh expert over random [u, i, u*i] memorised noise on MovieLens (a random
        # snapshot judged "worse" in 8 of 20 replicates, ΔAUC -0.005); at 0.1 it stays near zero unless
        # the representation carries signal (planted oracle still +0.15). The small scale only delays
        # what a per-id code gives the expert: per-id effects learned by dense Adam, faster than the
        # sparse id tables. Against a constant a random snapshot was ahead in 19 of 20 replicates on
        # the tiny planted world (+0.0022; scale 0.01 or 0: +0.0010; no u*i term: +0.0009), which is
        # why the iim baseline feeds this expert a random code per id (compare.evaluate_baseline)
        self.scale = nn.Parameter(torch.full((), 0.1))

    def expert(self, reps: list[torch.Tensor]) -> torch.Tensor:
        x0 = torch.cat([*reps, reps[0] * reps[1]] if self.product else reps, dim=1)  # (B, in)
        return self.scale * self.head(self.mlp(self.cross(x0))).squeeze(1)          # (B,)


class ProxyCTR(nn.Module):
    """Field embeddings -> DCN-v2 cross network -> MLP -> logit, with optional injected representations."""

    def __init__(self, cardinalities: tuple[int, ...], cfg: ProxyConfig, injection: Injection | None = None,
                 fusion: str = "concat", slots: tuple[int, ...] | None = None) -> None:
        super().__init__()
        if injection is not None and fusion not in FUSIONS:
            raise ConfigError(f"unknown fusion mode {fusion!r}; choose one of {', '.join(FUSIONS)} (or retrieval)")
        self.slots = tuple(slots) if slots is not None else (1,) * len(cardinalities)
        if len(self.slots) != len(cardinalities):
            raise ConfigError(f"{len(self.slots)} slot counts for {len(cardinalities)} fields")
        # one table per field, trained sparsely; with ``linear`` its last column is the field value's
        # first-order weight (zero at the start), so masking a field (importance) masks both
        self.emb_dim = cfg.emb_dim
        self.linear = cfg.linear
        # with ``fm``, the pairwise term Σ_{f<g} <e_f, e_g> of a factorisation machine over every field
        # (injected ones included) enters times a learned scale that starts at 0: on a few fields it
        # learns user x item structure in one pass, on many noisy fields it stays near zero
        self.fm = cfg.fm
        self.fm_scale = nn.Parameter(torch.zeros(()))
        width = cfg.emb_dim + (1 if cfg.linear else 0)
        embeddings = [nn.Embedding(c, width, sparse=True) for c in cardinalities]
        for e in embeddings:
            nn.init.normal_(e.weight, std=0.05)
            if cfg.linear:
                with torch.no_grad():
                    e.weight[:, cfg.emb_dim] = 0.0
        self.emb = nn.ModuleList(embeddings)
        starts = [sum(self.slots[:k]) for k in range(len(self.slots))]
        self._columns = [(a, a + s) for a, s in zip(starts, self.slots)]
        n_fields = len(cardinalities)
        self.reps = RepLookup(injection, cfg.rep_dropout) if injection is not None else None
        dims = self.reps.dims if self.reps is not None else []
        extra_fields = len(dims) if injection is not None and fusion == "concat" else 0
        in_dim = (n_fields + extra_fields) * cfg.emb_dim
        self.cross = CrossNetV2(in_dim, cfg.cross_layers)
        self.mlp = MLP(in_dim, cfg.mlp_hidden)
        self.head = nn.Linear(self.mlp.out_dim, 1)
        # Fusion weights are drawn last, so that a baseline and a variant built with the same seed
        # start from the same embeddings (and, for gate/iim, the same whole downstream model): their
        # per-seed AUC difference then measures the representation, not the luck of the draw.
        if injection is None:
            self.fusion: Fusion = Fusion()
        elif fusion == "concat":
            self.fusion = ConcatFusion(dims, cfg.emb_dim)
        elif fusion == "gate":
            self.fusion = GateFusion(dims, n_fields, cfg.emb_dim)
        else:
            self.fusion = IIMFusion(dims, cfg)

    def _embed(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Field ``k``'s embedding (B, D; with ``linear``, D + 1: the first-order weight last): one
        column, or the mean over a multi-valued field's non-padding slots (code 0 pads; a row with no
        value gets zeros)."""
        a, b = self._columns[k]
        if b - a == 1:
            return self.emb[k](x[:, a])
        codes = x[:, a:b]                                                   # (B, S)
        vectors = self.emb[k](codes)                                        # (B, S, D)
        mask = (codes != 0).unsqueeze(2).to(vectors.dtype)                  # (B, S, 1)
        summed = (vectors * mask).sum(1)                                    # (B, D)
        return summed / mask.sum(1).clamp_min(1.0)

    def forward(self, x: torch.Tensor, rep_rows: list[torch.Tensor] | None = None, *,
                field_override: dict[int, torch.Tensor] | None = None,
                rep_override: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits (B,). The overrides replace field ``k``'s embedding or injected table ``t``'s
        vectors by a given (D,) or (B, D) tensor — how feature-masking importance zeroes or
        mean-substitutes one input without touching the trained weights."""
        emb = torch.stack([self._embed(k, x) for k in range(len(self.emb))], dim=1)  # (B, F, D[+1])
        if field_override:
            emb = emb.clone()
            for k, value in field_override.items():
                emb[:, k] = value
        first_order = emb[:, :, self.emb_dim].sum(1) if self.linear else None        # (B,)
        emb = emb[:, :, :self.emb_dim]                                               # (B, F, D)
        reps = self.reps(rep_rows) if self.reps is not None and rep_rows is not None else []
        if rep_override:
            reps = [rep_override[t].expand_as(r) if t in rep_override else r for t, r in enumerate(reps)]
        if reps:
            emb = self.fusion.gate(emb, reps)
            extra = self.fusion.fields(reps)
            if extra:
                emb = torch.cat([emb, torch.stack(extra, dim=1)], dim=1)      # (B, F+T, D)
        x0 = emb.flatten(1)                                                    # (B, (F+T)*D)
        logit = self.head(self.mlp(self.cross(x0))).squeeze(1)                 # (B,)
        if first_order is not None:
            logit = logit + first_order
        if self.fm:
            logit = logit + self.fm_scale * 0.5 * (emb.sum(1).pow(2) - emb.pow(2).sum(1)).sum(1)  # (B,)
        if reps:
            expert = self.fusion.expert(reps)
            if expert is not None:
                logit = logit + expert
        return logit
