"""Configuration of the planted ad world: sizes, strengths of the planted effects, named scales."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from lee.config import ConfigModel
from lee.errors import ConfigError, LeeError

# Readable top-behaviour labels, one per planted interest group (and item category).
GROUP_LABELS: tuple[str, ...] = (
    "childcare", "indoor games", "outdoor sports", "beauty", "electronics", "cooking",
    "travel", "pets", "fashion", "home decor", "fitness", "books", "gardening", "music",
    "automotive", "finance",
)
AD_SCENARIOS: tuple[str, ...] = ("home", "search", "feed", "detail")
CONTENT_SCENARIO = "content"
ACTIVITY_LEVELS: tuple[str, ...] = ("low", "mid", "high")
CLICK_MODELS: tuple[str, ...] = ("legacy", "balanced")
"""``legacy``: group centroids at random on a sphere, users/items isotropic around them, the group
term dominates the click logit (a rank-2 projection loses almost nothing). ``balanced``: every
latent direction carries the same variance and weight, so a rank-k projection keeps about k/d of
the affinity; activity is a separate, smaller logit term. See :mod:`lee.world.generate`."""


class WorldConfig(ConfigModel):
    """Everything that shapes a generated world; the same config and seed give the same world."""

    config_name: ClassVar[str] = "world config"

    seed: int = Field(0, ge=0)
    n_users: int = Field(2000, gt=0)
    n_content_items: int = Field(600, gt=0)
    n_ad_items: int = Field(400, gt=0)
    n_advertisers: int = Field(40, gt=0)
    n_groups: int = Field(8, gt=0, le=len(GROUP_LABELS))
    latent_dim: int = Field(16, gt=0)
    n_events: int = Field(200_000, gt=0)
    start: str = "2026-01-01T00:00:00Z"
    duration_minutes: int = Field(60, gt=0)
    content_share: float = Field(0.5, ge=0, le=1)    # share of exposures in the content domain
    targeting_share: float = Field(0.5, ge=0, le=1)  # share of exposures drawn from the user's own group
    click_model: Literal["legacy", "balanced"] = "legacy"  # how latents are laid out (CLICK_MODELS)
    group_separation: float = 3.0       # norm of each group centroid
    user_noise: float = 0.6             # spread of users around their centroid (balanced: along the group directions)
    item_noise: float = 0.6
    affinity_strength: float = 0.3      # logit per unit of <user, item> latent affinity
    activity_effect: float | None = None  # logit per std of a user's log-activity; None: 0 legacy, 0.2 balanced
    content_base_logit: float = -3.0
    ad_base_logit: float = -4.0

    @field_validator("start")
    @classmethod
    def _event_time(cls, value: str) -> str:
        from lee.timeutil import parse_event_time

        try:
            parse_event_time(value)
        except LeeError:
            raise ValueError("an event time such as 2026-01-01T00:00:00Z") from None
        return value

    @model_validator(mode="after")
    def _one_advertiser_per_category(self) -> WorldConfig:
        if self.n_advertisers < self.n_groups:
            raise ValueError(f"n_advertisers ({self.n_advertisers}) must be at least n_groups ({self.n_groups}): "
                             "each category needs one")
        if self.click_model == "balanced" and self.latent_dim < self.n_groups - 1:
            raise ValueError(f"latent_dim ({self.latent_dim}) must be at least n_groups - 1 ({self.n_groups - 1}): "
                             "the group centroids are the vertices of a regular simplex")
        return self

    @property
    def start_time(self) -> datetime:
        from lee.timeutil import parse_event_time

        return parse_event_time(self.start).astimezone(UTC)

    @property
    def activity_logit(self) -> float:
        """The activity term's logit per standard deviation of log-activity, resolved per click model."""
        if self.activity_effect is not None:
            return self.activity_effect
        return 0.2 if self.click_model == "balanced" else 0.0

    @property
    def labels(self) -> tuple[str, ...]:
        return GROUP_LABELS[: self.n_groups]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


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


def config_for_scale(scale: str, *, seed: int = 0, source: str | None = None, **overrides: Any) -> WorldConfig:
    """The config of a named scale, with explicit overrides (unknown keys are errors).

    Overrides from code are read leniently (a string where a number belongs is converted); with
    ``source`` (where they came from, e.g. ``--set``) they are plain data, type-checked strictly,
    and errors name that source.
    """
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    raw = {**SCALES[scale], **overrides, "seed": seed}
    return WorldConfig.from_dict(raw, source=source) if source is not None else WorldConfig(**raw)


