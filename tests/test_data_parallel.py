"""Data-parallel proxy training (``EvalConfig.data_parallel``) equals one-process training.

Two workers each take half of every global batch and average their gradients (gloo collectives
after each backward pass, sparse embedding gradients included), so after every step the model is
the one-process model up to the order in which float32 sums are taken: gradients differ in the last
bits (~1e-7 relative), and over a window of Adam/Adagrad steps the parameters drift apart by ~1e-6.
Scores then differ by ~1e-6, which reorders a pair of test events only when their scores are that
close, so each window's AUC may move by a few such pairs at most: |ΔAUC| <= 1e-4 per window, and
the verdicts (decided by intervals ~1e-2 wide) must be the same.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lee.errors import ConfigError
from lee.evaluator.compare import EvalConfig, compare_snapshots
from lee.evaluator.data import stream_from_world
from lee.evaluator.inject import inject
from lee.evaluator.models import ProxyConfig, ProxyCTR
from lee.evaluator.stream import run_stream
from lee.snapshot import SnapshotStore
from lee.world.planted import write_planted_variants

AUC_TOL = 1e-4      # per window: float summation order only (see the module docstring)
PARAM_TOL = 1e-5    # parameters after one window of steps


@pytest.fixture(scope="module")
def planted(tiny_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("lee-dp")
    write_planted_variants(tiny_world, root, n_snapshots=1, seed=0, variants=("oracle",))
    return SnapshotStore(root)


@pytest.fixture(scope="module")
def stream(tiny_world):
    return stream_from_world(tiny_world)


def test_two_workers_give_the_one_process_window_aucs_and_verdicts(stream, planted):
    snaps = {"oracle": planted.latest("oracle")}
    one = compare_snapshots(stream, snaps, EvalConfig(seeds=(0,), n_boot=50))
    two = compare_snapshots(stream, snaps, EvalConfig(seeds=(0,), n_boot=50, data_parallel=2))
    for name in ("baseline", "oracle"):
        a, b = one.get(name), two.get(name)
        assert len(a.window_auc) == len(b.window_auc) == 9
        np.testing.assert_allclose(b.window_auc, a.window_auc, rtol=0, atol=AUC_TOL)
        assert abs(b.auc - a.auc) <= AUC_TOL
        assert b.runs[0].samples_trained == a.runs[0].samples_trained
        assert b.runs[0].training["data_parallel"] == 2 and "data_parallel" not in a.runs[0].training
    assert two.get("oracle").verdict == one.get("oracle").verdict == "better"
    assert abs(two.get("oracle").delta.delta - one.get("oracle").delta.delta) <= 2 * AUC_TOL


def test_parameters_after_the_first_window_agree_with_an_empty_shard_on_the_last_batch(stream, planted):
    """Two windows of 609 events: batches of 32, the last one a single event, so worker 1 gets an
    empty shard there (its gradient is zero and the average is still the one event's gradient)."""
    small = stream.subset(1218)
    assert small.window_bounds(2)[0] == (0, 609)
    injection = inject(planted.latest("oracle"), "UR+IR", small.user_ids, small.item_ids, small.user_row,
                       small.item_row)
    a = run_stream(small, injection, n_windows=2, keep_model=True)
    b = run_stream(small, injection, n_windows=2, keep_model=True, data_parallel=2)
    assert a.model is not None and b.model is not None
    pa, pb = dict(a.model.named_parameters()), dict(b.model.named_parameters())
    assert pa.keys() == pb.keys()
    assert ProxyConfig().batch_for(609) == 32 and 609 % 32 == 1
    moved = max(float((p.detach() - q.detach()).abs().max()) for p, q in
                zip(pa.values(), _fresh(small, injection).parameters()))
    assert moved > 1e-2                               # training moved the weights: the comparison means something
    for name in pa:
        torch.testing.assert_close(pb[name], pa[name], rtol=0, atol=PARAM_TOL, msg=name)
    np.testing.assert_allclose(b.scores, a.scores, rtol=0, atol=PARAM_TOL)


def _fresh(stream, injection):
    """The untrained model run_stream starts from (seed 0)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return ProxyCTR(stream.cardinalities, ProxyConfig(), injection, "concat", slots=stream.slots)


def test_data_parallel_is_out_of_stored_keys_at_one_and_refused_for_retrieval():
    assert "data_parallel" not in EvalConfig().to_dict()
    assert EvalConfig(data_parallel=2).to_dict()["data_parallel"] == 2
    assert EvalConfig.from_dict(EvalConfig().to_dict()) == EvalConfig()
    with pytest.raises(ConfigError, match="retrieval model trains in one process"):
        EvalConfig(fusion="retrieval", data_parallel=2)
    with pytest.raises(ConfigError, match="data_parallel"):
        EvalConfig(data_parallel=0)
