"""The small sample committed under ``fixtures/``: a tiny planted world and its planted variants.

Regenerate with ``lee world fixtures --out fixtures/tiny``; a test checks that the committed copy
equals a fresh regeneration, so the fixture can never drift from the generator.
"""

from __future__ import annotations

from pathlib import Path

from lee.world.config import config_for_scale
from lee.world.generate import generate_world
from lee.world.io import save_world
from lee.world.planted import write_planted_variants

FIXTURE_SCALE = "tiny"
FIXTURE_SEED = 20261123
FIXTURE_DIM = 16
FIXTURE_SNAPSHOTS = 2


def write_fixtures(out: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``out/world`` and ``out/snapshots`` (every planted variant, 2 snapshots 5 min apart)."""
    out = Path(out)
    world = generate_world(config_for_scale(FIXTURE_SCALE, seed=FIXTURE_SEED))
    save_world(world, out / "world", overwrite=overwrite)
    write_planted_variants(world, out / "snapshots", dim=FIXTURE_DIM, n_snapshots=FIXTURE_SNAPSHOTS,
                           seed=FIXTURE_SEED, overwrite=overwrite)
    return out
