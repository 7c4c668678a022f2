"""Configuration of the planted ad world: sizes, strengths of the planted effects, named scales."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from lee.errors import ConfigError, check_known_keys

# Readable top-behaviour labels, one per planted interest group (and item category).
GROUP_LABELS: tuple[str, ...] = (
    "childcare", "indoor games", "outdoor sports", "beauty", "electronics", "cooking",
    "travel", "pets", "fashion", "home decor", "fitness", "books", "gardening", "music",
    "automotive", "finance",
)
AD_SCENARIOS: tuple[str, ...] = ("home", "search", "feed", "detail")
CONTENT_SCENARIO = "content"
ACTIVITY_LEVELS: tuple[str, ...] = ("low", "mid", "high")


@dataclass(frozen=True)
class WorldConfig:
    """Everything that shapes a generated world; the same config and seed give the same world."""

    seed: int = 0
    n_users: int = 2000
    n_content_items: int = 600
    n_ad_items: int = 400
    n_advertisers: int = 40
    n_groups: int = 8
    latent_dim: int = 16
    n_events: int = 200_000
    start: str = "2026-01-01T00:00:00Z"
    duration_minutes: int = 60
    content_share: float = 0.5          # share of exposures in the content domain
    targeting_share: float = 0.5        # share of exposures drawn from the user's own group
    group_separation: float = 3.0       # norm of each group centroid in latent space
    user_noise: float = 0.6             # per-dimension spread of users around their centroid
    item_noise: float = 0.6
    affinity_strength: float = 0.3      # logit per unit of <user, item> latent affinity
    content_base_logit: float = -3.0
    ad_base_logit: float = -4.0

    def __post_init__(self) -> None:
        positive = ("n_users", "n_content_items", "n_ad_items", "n_advertisers", "n_groups",
                    "latent_dim", "n_events", "duration_minutes")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"world config: {name} must be positive; got {getattr(self, name)}")
        if self.n_groups > len(GROUP_LABELS):
            raise ConfigError(f"world config: n_groups must be at most {len(GROUP_LABELS)}; got {self.n_groups}")
        if self.n_advertisers < self.n_groups:
            raise ConfigError("world config: n_advertisers must be at least n_groups (each category needs one)")
        for name in ("content_share", "targeting_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"world config: {name} must lie in [0, 1]; got {getattr(self, name)}")

    @property
    def start_time(self) -> datetime:
        from lee.timeutil import parse_event_time

        return parse_event_time(self.start).astimezone(timezone.utc)

    @property
    def labels(self) -> tuple[str, ...]:
        return GROUP_LABELS[: self.n_groups]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> WorldConfig:
        check_known_keys(raw, {f.name for f in dataclasses.fields(cls)}, what="world config")
        return cls(**raw)


# Named sizes. `small` is the default (seconds); `large` reaches 10M events and 1M users.
SCALES: dict[str, dict[str, Any]] = {
    "tiny": dict(n_users=400, n_content_items=150, n_ad_items=100, n_advertisers=12, n_groups=6,
                 n_events=30_000, duration_minutes=30),
    "small": {},
    "medium": dict(n_users=100_000, n_content_items=15_000, n_ad_items=10_000, n_advertisers=500,
                   n_events=2_000_000, duration_minutes=180),
    "large": dict(n_users=1_000_000, n_content_items=120_000, n_ad_items=80_000, n_advertisers=4000,
                  n_groups=12, n_events=10_000_000, duration_minutes=360),
}


def config_for_scale(scale: str, *, seed: int = 0, **overrides: Any) -> WorldConfig:
    """The config of a named scale, with explicit overrides (unknown keys are errors)."""
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    return WorldConfig.from_dict({**SCALES[scale], **overrides, "seed": seed})


