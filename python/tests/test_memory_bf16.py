"""bf16-mixed: what autograd saves under torch.autocast(bfloat16) around the torch engine's model, counted as the
engine counts it (scalelm.memory.SavedTensorCounter), against the planner's `torch` convention for
train.precision "bf16-mixed" (runtime/planner/torch-model.ts autocastActivationTerms): equal, byte for byte.

Measured under CPU autocast (the engine itself refuses bf16-mixed on CPU; it runs the same model under CUDA
autocast on GPUs). The matmuls and SDPA are on both devices' lower-precision lists and the rest stays fp32 on
both, so the same tensors are saved; the attention terms for CUDA's flash kernel are derived, not measured here
(docs/torch-engine.md). The model states stay fp32 under autocast: checked after one AdamW step."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from engines import llama_shaped
from test_memory import predicted

from scalelm.memory import SavedTensorCounter, nbytes, optimizer_bytes
from scalelm.model import CausalLM, model_shape


def bf16_config(config: dict[str, Any], family: str, recompute: str, micro: int) -> dict[str, Any]:
    c: dict[str, Any] = json.loads(json.dumps(config if family == "gpt2" else llama_shaped(config)))
    if family == "llama":
        c["model"]["heads"] = 4  # GQA: 4 query heads, 2 key/value heads
    c["model"]["dropout"] = 0
    c["train"].update(precision="bf16-mixed", recompute=recompute, microBatch=micro, globalBatch=micro)
    c["parallel"].update(dp=1, tp=1, zero=0)
    return c


@pytest.mark.parametrize("recompute", ["none", "selective", "full"])
@pytest.mark.parametrize("family,micro", [("gpt2", 2), ("llama", 3)])
def test_autocast_saved_bytes_equal_the_torch_convention(
    family: str, micro: int, recompute: str, small_config: dict[str, Any]
) -> None:
    config = bf16_config(small_config, family, recompute, micro)
    plan = predicted(config)
    torch.manual_seed(0)
    model = CausalLM(model_shape(config["model"]), recompute=recompute)
    model.init_weights(1)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    vocab, seq = config["model"]["vocab"], config["model"]["seqLen"]
    tokens = torch.randint(0, vocab, (micro, seq))
    targets = torch.randint(0, vocab, (micro, seq))
    counter = SavedTensorCounter()
    with counter.counting(), torch.autocast("cpu", torch.bfloat16):
        loss = model(tokens, targets)
    assert loss.dtype == torch.float32
    loss.backward()
    opt.step()
    assert counter.bytes == plan["activations"], f"measured {counter.bytes}, predicted {plan['activations']}"
    params = nbytes(model.parameters())
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert (params, nbytes(p.grad for p in model.parameters()), optimizer_bytes(opt)) == (
        plan["params"],
        plan["grads"],
        plan["optimizer"],
    )
    assert nbytes(model.buffers()) == plan["buffers"]
