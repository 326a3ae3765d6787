"""lq.torch under torch.distributed: two processes on 127.0.0.1 (gloo)."""

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import lq
import lq.torch as lqt

import _distributed

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="torch.distributed with gloo is not available")

WORLD = 2


def _spawn(worker, tmp_path, *args):
    mp.spawn(worker, args=(WORLD, _distributed.free_port(), str(tmp_path),
                           *args), nprocs=WORLD, join=True)
    return [torch.load(path) for path in sorted(tmp_path.glob("*.pt"))]


def test_ddp_replicas_stay_identical_and_learn(tmp_path):
    ranks = _spawn(_distributed.train, tmp_path)
    first, second = ranks
    for a, b in zip(first["params"], second["params"]):
        assert torch.equal(a, b)
    for r in ranks:
        losses = r["losses"]
        assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses
    # Each rank drew its own LUQ samples: per-rank streams.
    assert first["streams"] != second["streams"]


def test_rank_streams_halve_the_variance_of_the_mean_gradient(tmp_path):
    trials = 256
    first, second = _spawn(_distributed.gradient_samples, tmp_path, trials)
    # Shared streams: every rank quantizes identically; per-rank: not.
    assert torch.equal(first["shared"]["local"], second["shared"]["local"])
    assert not torch.equal(first["per_rank"]["local"][0],
                           second["per_rank"]["local"][0])
    assert torch.equal(first["per_rank"]["reduced"],
                       second["per_rank"]["reduced"])

    def variance(policy):
        return float(first[policy]["reduced"].var(0).mean())

    ratio = variance("per_rank") / variance("shared")
    # The mean of two independent unbiased samples has half the variance of
    # one. Each variance is estimated from `trials` samples per element:
    # relative standard deviation sqrt(2 / (trials - 1)) if the elements
    # were one (fully correlated; averaging over 512 elements only
    # tightens it), so the ratio's is at most sqrt(2) times that; 4 of them
    # bound a false failure well below 1e-3 and keep 1.0 (no averaging)
    # far outside.
    bound = 4 * math.sqrt(2) * math.sqrt(2 / (trials - 1)) * 0.5
    assert abs(ratio - 0.5) < bound, (ratio, bound)


def test_rank_stream_is_the_documented_mix():
    assert lqt.rank_stream(0, 0) != lqt.rank_stream(0, 1)
    assert lqt.rank_stream(7, 1) != lqt.rank_stream(1, 7)
    # The documented mix, high half of splitmix64(123 << 32 | 4): a change
    # would silently change every data-parallel run's samples.
    assert lqt.rank_stream(123, 4) == 4264425876
    with pytest.raises(lq.Error, match="2\\^32"):
        lqt.rank_stream(-1, 0)
    with pytest.raises(lq.Error, match="per_rank"):
        lqt.Linear(4, 4, streams="everywhere")
