"""The time-aware CR moving average: a hand-computed example, the slow reference, and its properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lee.errors import ConfigError
from lee.upstream.cr_average import ConstantBeta, CRAverager, ExpDecay, reference_update


def _run(events: list[tuple[int, float, list[float]]], beta, n_ids: int = 4, dim: int = 2,
         batches: int = 1) -> CRAverager:
    """Feed ``events`` (id, ts, x) in ``batches`` consecutive slices of event-time order."""
    avg = CRAverager(n_ids, dim, beta)
    events = sorted(events, key=lambda e: e[1])
    for part in np.array_split(np.arange(len(events)), batches):
        if part.size == 0:
            continue
        chunk = [events[k] for k in part]
        avg.update(torch.tensor([e[0] for e in chunk]), torch.tensor([e[1] for e in chunk], dtype=torch.float64),
                   torch.tensor([e[2] for e in chunk], dtype=torch.float32))
    return avg


def test_hand_computed_example():
    """tau = 100 s. User 0: x=(1,0) at t=0, x=(0,1) at t=100, x=(1,1) at t=300.

    After t=0:   CR = (1, 0)                                  (first event sets the state)
    After t=100: b = e^-1;  CR = (e^-1, 1 - e^-1)              = (0.367879, 0.632121)
    After t=300: b = e^-2;  CR = e^-2 (e^-1, 1 - e^-1) + (1 - e^-2) (1, 1)
                              = (e^-3 + 1 - e^-2, e^-2 - e^-3 + 1 - e^-2) = (0.914464, 0.950213)
    User 1 has one event and keeps its vector; ids 2 and 3 are never seen.
    """
    events = [(0, 0.0, [1.0, 0.0]), (0, 100.0, [0.0, 1.0]), (1, 50.0, [2.0, -2.0]), (0, 300.0, [1.0, 1.0])]
    e = math.e
    want0 = [e**-3 + 1 - e**-2, 1 - e**-3]
    for batches in (1, 2, 4):  # the answer must not depend on how the stream is batched
        avg = _run(events, ExpDecay(100.0), batches=batches)
        rows, state, last = avg.snapshot()
        assert rows.tolist() == [0, 1]
        np.testing.assert_allclose(state[0].numpy(), want0, rtol=1e-6)
        np.testing.assert_allclose(state[1].numpy(), [2.0, -2.0])
        assert last.tolist() == [300.0, 50.0]


def test_order_within_a_batch_does_not_matter():
    events = [(0, 0.0, [1.0, 0.0]), (0, 100.0, [0.0, 1.0]), (0, 300.0, [1.0, 1.0])]
    avg_sorted = _run(events, ExpDecay(100.0))
    avg = CRAverager(4, 2, ExpDecay(100.0))
    shuffled = [events[2], events[0], events[1]]
    avg.update(torch.tensor([0, 0, 0]), torch.tensor([e[1] for e in shuffled], dtype=torch.float64),
               torch.tensor([e[2] for e in shuffled]))
    torch.testing.assert_close(avg.state, avg_sorted.state)


def test_constant_beta_is_a_plain_ema():
    avg = _run([(0, 0.0, [4.0, 0.0]), (0, 1.0, [0.0, 0.0]), (0, 2.0, [0.0, 0.0])], ConstantBeta(0.5))
    np.testing.assert_allclose(avg.state[0].numpy(), [1.0, 0.0])  # 4 * 0.5 * 0.5


def test_long_gap_forgets_the_past():
    avg = _run([(0, 0.0, [1.0, 1.0]), (0, 1e6, [-3.0, 5.0])], ExpDecay(10.0))
    np.testing.assert_allclose(avg.state[0].numpy(), [-3.0, 5.0], atol=1e-6)


def test_tau_must_be_positive():
    with pytest.raises(ConfigError, match="tau_seconds must be positive"):
        ExpDecay(0.0)


_event = st.tuples(st.integers(0, 5), st.integers(0, 2_000), st.lists(st.floats(-10, 10), min_size=3, max_size=3))


@settings(max_examples=60, deadline=None)
@given(events=st.lists(_event, min_size=1, max_size=60), batches=st.integers(1, 5),
       tau=st.floats(1.0, 5_000.0), constant=st.booleans())
def test_matches_the_one_event_at_a_time_reference(events, batches, tau, constant):
    """Vectorised segmented-scan update == the recursion applied event by event, for any batching."""
    # distinct timestamps per id keep the reference's event order unambiguous
    seen: set[tuple[int, int]] = set()
    events = [(i, float(t), x) for i, t, x in events if (i, t) not in seen and not seen.add((i, t))]
    beta = ConstantBeta(0.7) if constant else ExpDecay(tau)
    avg = _run(events, beta, n_ids=6, dim=3, batches=batches)
    state: dict[int, list[float]] = {}
    last: dict[int, float] = {}
    reference_update(state, last, events, beta)
    rows, got, got_last = avg.snapshot()
    assert sorted(state) == rows.tolist()
    for r, vec, t in zip(rows.tolist(), got.numpy(), got_last.tolist()):
        np.testing.assert_allclose(vec, state[r], rtol=1e-5, atol=1e-5)
        assert t == last[r]


@settings(max_examples=30, deadline=None)
@given(xs=st.lists(st.lists(st.floats(-5, 5), min_size=2, max_size=2), min_size=1, max_size=20),
       gaps=st.lists(st.floats(0, 1e4), min_size=20, max_size=20))
def test_state_stays_in_the_convex_hull(xs, gaps):
    """A moving average never leaves the box spanned by its inputs."""
    ts = np.cumsum(gaps[: len(xs)])
    avg = _run([(0, float(t), x) for t, x in zip(ts, xs)], ExpDecay(300.0))
    lo, hi = np.min(xs, axis=0), np.max(xs, axis=0)
    s = avg.state[0].numpy()
    assert (s >= lo - 1e-4).all() and (s <= hi + 1e-4).all()
