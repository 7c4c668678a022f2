"""Shared fixtures: one tiny planted world per test session (generation takes ~0.1 s)."""

from __future__ import annotations

import pytest
import torch

from lee.world.config import config_for_scale
from lee.world.generate import generate_world
from lee.world.model import World

# One torch thread: on a 2-core box shared with anything else, torch's 2-thread default stalls at
# every parallel region (measured 10x slower); one thread costs ~20% when the box is idle.
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _dashboard_may_read_test_directories(tmp_path_factory):
    """The dashboard opens typed paths only under its configured roots (LEE_DASHBOARD_ROOTS): the
    tests' temporary directories are one."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEE_DASHBOARD_ROOTS", str(tmp_path_factory.getbasetemp()))
        yield


@pytest.fixture(scope="session")
def tiny_world() -> World:
    return generate_world(config_for_scale("tiny", seed=7))


@pytest.fixture(scope="session")
def small_world() -> World:
    return generate_world(config_for_scale("small", seed=0))
