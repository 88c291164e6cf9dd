"""The torch engine's comm gauge (issue 14, item 7): every collective kind a layout uses is reported with its
calls, its bytes as runtime/comm counts them (the buffer; the unsplit buffer for all-gather and
reduce-scatter) and a measured time — FSDP2's all-gathers and reduce-scatters included. Real torchrun runs
with gloo on CPU; the expected sizes come from the model's parameter shapes and Megatron's schedule."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from engines import PYTHON_DIR, torch_train, with_layout

from scalelm.model import model_shape, param_specs
from scalelm.tp import slice_shard, tp_vocab

STEPS = 2


def shard_bytes(config: dict[str, Any], dp: int, tp: int) -> int:
    """Bytes of one rank's model before FSDP2 shards it (its TP shard of each parameter), each tensor's dim 0
    padded to a multiple of dp as FSDP2 pads it: the unsplit size of all-gathers and reduce-scatters."""
    shape = model_shape(config["model"])
    total = 0
    for s in param_specs(shape):
        local = slice_shard(s.name, torch.zeros(s.shape), tp, 0, tp_vocab(shape.vocab, tp)).shape
        total += math.ceil(local[0] / dp) * dp * math.prod(local[1:]) * 4
    return total


def expected(config: dict[str, Any], dp: int, tp: int, zero: int) -> dict[str, tuple[int, int]]:
    """{kind: (calls, bytes)} of one training step on a rank."""
    m, t = config["model"], config["train"]
    L, B, T, C = m["layers"], t["microBatch"], m["seqLen"], m["hidden"]
    accum = t["globalBatch"] // (t["microBatch"] * dp)
    model = shard_bytes(config, dp, tp)
    out = {"broadcast-world": (1, 16), "all-reduce-world": (1, 16)}  # the stop/checkpoint flags; [loss, Σg²]
    if tp > 1:
        # Per micro-batch, forward: the embedding's g, two g per block, the vocab-parallel loss's MAX, Σexp and
        # target logit ([B·T] each); backward: two f per block and the head's f ([B, T, C] each).
        calls = 1 + 2 * L + 3 + 2 * L + 1
        nbytes = 4 * ((1 + 2 * L + 2 * L + 1) * B * T * C + 3 * B * T)
        out["all-reduce-tp"] = (calls * accum, nbytes * accum)
    units = L + 1  # FSDP2 units: each block and the root (embeddings, final norm)
    if zero >= 2:
        gathers = 2 if zero == 3 else 1  # ZeRO-3 gathers each unit again for its backward
        out["all-gather-dp"] = (units * gathers * accum, model * gathers * accum)
        out["reduce-scatter-dp"] = (units * accum, model * accum)  # FSDP2 reduce-scatters every micro-batch
    elif dp > 1:
        # DDP: one all-reduce on the last micro-batch, one bucket (the model is far below DDP's first 1 MiB).
        out["all-reduce-dp"] = (1, model)
        if zero == 1:
            out["broadcast-dp"] = (len(param_specs(model_shape(m))), model)  # each parameter from its owner
    return out


@pytest.mark.parametrize(
    "layout",
    [
        dict(dp=2, tp=1, zero=0),
        dict(dp=2, tp=1, zero=1),
        dict(dp=2, tp=1, zero=2),
        dict(dp=2, tp=1, zero=3),
        dict(dp=1, tp=2, zero=0),
        dict(dp=2, tp=2, zero=3),
    ],
    ids=["dp2", "dp2-zero1", "dp2-zero2", "dp2-zero3", "tp2", "dp2-tp2-zero3"],
)
def test_every_collective_kind_is_counted_and_timed(
    layout: dict[str, int], small_config: dict[str, Any], tmp_path: Path
) -> None:
    config = with_layout(small_config, **layout)
    config["train"].update(steps=STEPS, evalEvery=0, checkpointEvery=0)
    _, msgs = torch_train(tmp_path, config)
    comm = [m for m in msgs if m["type"] == "comm"]
    assert [m["step"] for m in comm] == [1, 2] and all(m["rank"] == 0 for m in comm)
    want = expected(config, layout["dp"], layout["tp"], layout["zero"])
    assert {s["kind"] for s in comm[0]["collectives"]} == set(want)
    first, second = ({s["kind"]: s for s in m["collectives"]} for m in comm)
    for kind, (calls, nbytes) in want.items():
        # Totals since the start: step 1's, then twice as much after step 2.
        assert (first[kind]["calls"], first[kind]["bytes"]) == (calls, nbytes), kind
        assert (second[kind]["calls"], second[kind]["bytes"]) == (2 * calls, 2 * nbytes), kind
        # Measured, not counted: every kind took time, and step 2 added more.
        assert 0 < first[kind]["ms"] < second[kind]["ms"], (kind, first[kind], second[kind])


def test_a_torch_without_fsdp2_custom_comms_counts_sizes_with_time_unknown(
    small_config: dict[str, Any], tmp_path: Path
) -> None:
    """An older torch without FSDPModule.set_custom_all_gather/_reduce_scatter: the rank still trains, counts
    FSDP2's collectives from the sizes (the same calls and bytes) with 0 ms, and says so once."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "from torch.distributed.fsdp import FSDPModule\n"
        "del FSDPModule.set_custom_all_gather, FSDPModule.set_custom_reduce_scatter\n"
    )
    config = with_layout(small_config, dp=2, tp=1, zero=3)
    config["train"].update(steps=STEPS, evalEvery=0, checkpointEvery=0)
    _, msgs = torch_train(tmp_path / "run", config, env={"PYTHONPATH": f"{shim}:{PYTHON_DIR}"})
    warns = [m["message"] for m in msgs if m["type"] == "log" and m["level"] == "warn"]
    assert len(warns) == 1 and "all-gather-dp and reduce-scatter-dp are counted from the sizes" in warns[0]
    comm = [m for m in msgs if m["type"] == "comm"]
    first = {s["kind"]: s for s in comm[0]["collectives"]}
    want = expected(config, 2, 1, 3)
    for kind in ("all-gather-dp", "reduce-scatter-dp"):
        assert (first[kind]["calls"], first[kind]["bytes"], first[kind]["ms"]) == (*want[kind], 0)
    assert first["all-reduce-world"]["ms"] > 0  # the rest still timed
