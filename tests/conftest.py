"""Shared fixtures: one tiny planted world per test session (generation takes ~0.1 s)."""

from __future__ import annotations

import pytest

from lee.world.config import config_for_scale
from lee.world.generate import generate_world
from lee.world.model import World


@pytest.fixture(scope="session")
def tiny_world() -> World:
    return generate_world(config_for_scale("tiny", seed=7))


@pytest.fixture(scope="session")
def small_world() -> World:
    return generate_world(config_for_scale("small", seed=0))
