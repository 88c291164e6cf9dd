"""scalelm.memory.SamplingPolicy: which steps run the costly memory measurement, for given step times and shapes
(behaviour, not timing: the times are given, nothing is timed here), and the Monitor's per-shape counts."""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from itertools import pairwise
from pathlib import Path

import pytest
import torch
from torch import nn

from scalelm import Monitor
from scalelm.memory import SamplingPolicy, SavedTensorCounter


def run(
    policy: SamplingPolicy,
    steps: int,
    plain_s: float,
    sampled_s: float,
    shape: Callable[[int], Hashable] = lambda s: None,
    extra: float | None = None,
) -> list[int]:
    """Drives the policy as the engine does (due, then the step's time); returns the sampled steps."""
    out = []
    for s in range(1, steps + 1):
        if policy.due(s, shape(s)):
            out.append(s)
            policy.step_done(s, sampled_s if extra is None else plain_s, extra)
        else:
            policy.step_done(s, plain_s)
    return out


def test_step_one_then_a_probe_then_as_the_budget_allows() -> None:
    # A hooked step costs 0.5 s more than a 1 s plain step; budget 1/64 (binary-exact): a sample per ~32 steps.
    policy = SamplingPolicy(budget=1 / 64, min_every=10, max_every=1000)
    got = run(policy, 400, 1.0, 1.5)
    assert got[:2] == [1, 11]  # step 1 always; the probe that measures the cost min_every steps later
    assert got[2] == 32  # the probe's cost (0.5 s) paid back at 1/64 s a step
    assert {b - a for a, b in pairwise(got[2:])} <= {31, 32}, got
    elapsed = 400 + 0.5 * len(got)
    assert policy.spent == 0.5 * (len(got) - 1)  # step 1 (no plain steps before it to compare with) is not charged
    assert policy.spent <= elapsed / 64 + 0.5  # amortised under the budget, within one sample


def test_cheap_hooks_sample_every_min_every_steps() -> None:
    got = run(SamplingPolicy(budget=0.0025, min_every=10, max_every=1000), 60, 1.0, 1.0001)
    assert got == [1, 11, 21, 31, 41, 51]


def test_costly_hooks_are_capped_by_max_every() -> None:
    # Hooks that double the step: the budget alone would wait 400 steps; max_every forces a refresh at 100.
    got = run(SamplingPolicy(budget=0.0025, min_every=10, max_every=100), 350, 1.0, 2.0)
    assert got == [1, 11, 111, 211, 311]


def test_a_new_shape_samples_at_once_and_a_known_one_does_not() -> None:
    # Sequence length 128, then 64 from step 35, then 128 again from step 38 (already measured).
    def shape(s: int) -> tuple[int, int]:
        return (8, 64) if 35 <= s < 38 else (8, 128)

    got = run(SamplingPolicy(budget=0.01, min_every=10, max_every=1000), 60, 1.0, 1.001, shape)
    assert got == [1, 11, 21, 31, 35, 45, 55], got


def test_new_shapes_every_step_cannot_buy_a_sample_per_step() -> None:
    # Dynamic padding: a new shape every step. The first after step 1 samples (the credit is positive); with no
    # plain step to compare it with, it is charged its whole time, and the credit then spaces the rest.
    policy = SamplingPolicy(budget=0.01, min_every=10, max_every=1000)
    got = run(policy, 300, 1.0, 2.0, lambda s: (1, s))
    assert got[:2] == [1, 2], got
    assert got[2] > 150 and len(got) <= 2 + 300 * 0.01 / 1.0 + 1, got


def test_a_later_forward_of_the_step_with_a_new_shape_turns_the_step_into_a_sampled_one() -> None:
    policy = SamplingPolicy(budget=0.01, min_every=10, max_every=1000)
    assert policy.due(1, (4, 16))
    policy.step_done(1, 1.0)
    assert not policy.due(2, (4, 16))
    assert not policy.due(2, (4, 16))  # asked again (the next micro-batch): same answer
    assert policy.due(2, (4, 8))  # the last micro-batch of an epoch is shorter: counted
    assert policy.due(2, (4, 16))  # and the step stays a sampled one
    policy.step_done(2, 1.0)
    assert policy.last == 2


def test_a_caller_timed_cost_is_used_as_given() -> None:
    # nvidia-smi: the read is timed alone (0.25 s against 1 s steps at 1/64: one read per 16 steps).
    policy = SamplingPolicy(budget=1 / 64, min_every=1, max_every=1000)
    got = run(policy, 100, 1.0, 1.0, extra=0.25)
    assert got == [1, 17, 33, 49, 65, 81, 97], got
    assert policy.cost == 0.25 and policy.spent == 0.25 * len(got)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="budget"):
        SamplingPolicy(budget=0)
    with pytest.raises(ValueError, match="min_every"):
        SamplingPolicy(min_every=10, max_every=5)


def test_the_monitor_counts_a_new_shape_and_reports_a_known_one_from_its_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sequence length 8, then 4 (a new shape: counted at once), then 8 again (known: its count, not the last)."""
    for k in ("SCALELM_CHANNEL", "SCALELM_CHANNEL_TOKEN", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(32, 16), nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 32))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def saved(seq: int) -> int:
        counter = SavedTensorCounter()
        with counter.counting():
            model(torch.zeros(2, seq, dtype=torch.long)).sum().backward()
        model.zero_grad(set_to_none=True)
        return counter.bytes

    want = {8: saved(8), 4: saved(4)}
    assert want[4] < want[8]
    monitor = Monitor(model, opt, name="shapes", run_dir=str(tmp_path))
    for seq in (8, 4, 8):
        ids = torch.randint(0, 32, (2, seq))
        loss = model(ids).float().pow(2).mean()
        loss.backward()
        opt.step()
        monitor.step(loss=loss, tokens=2 * seq)
        opt.zero_grad(set_to_none=True)
    monitor.close()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    acts = [m["categories"]["activations"] for m in lines if m["type"] == "memory"]
    # The loss's own saved tensors (pow, mean) come after the model's forward ends: not counted, as in saved().
    assert acts == [want[8], want[4], want[8]], (acts, want)
    assert monitor.sampling.sampled == 2
