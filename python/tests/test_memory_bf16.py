"""bf16-mixed: what autograd saves under torch.autocast(bfloat16) around the torch engine's model, counted as the
engine counts it (scalelm.memory.SavedTensorCounter), plus the bf16 copies autocast's cast cache alone keeps
until the forward ends, against the planner's `torch` convention for
train.precision "bf16-mixed" (runtime/planner/torch-model.ts autocastActivationTerms): equal, byte for byte.

Measured under CPU autocast (the engine itself refuses bf16-mixed on CPU; it runs the same model under CUDA
autocast on GPUs). The matmuls and SDPA are on both devices' lower-precision lists and the rest stays fp32 on
both, so the same tensors are saved; the attention terms for CUDA's flash kernel are derived, not measured here
(docs/torch-engine.md). The model states stay fp32 under autocast: checked after one AdamW step. tp=2 runs two
processes over gloo, as the engine's tensor-parallel ranks (Megatron f/g all-reduces in the forward)."""

from __future__ import annotations

import json
import socket
import weakref
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from engines import llama_shaped
from test_memory import predicted
from torch.utils._python_dispatch import TorchDispatchMode

from scalelm.memory import SavedTensorCounter, nbytes, optimizer_bytes
from scalelm.model import CausalLM, model_shape
from scalelm.tp import TpGroup


def bf16_config(config: dict[str, Any], family: str, recompute: str, micro: int, tp: int = 1) -> dict[str, Any]:
    c: dict[str, Any] = json.loads(json.dumps(config if family == "gpt2" else llama_shaped(config)))
    if family == "llama":
        c["model"]["heads"] = 4  # GQA: 4 query heads, 2 key/value heads
    c["model"]["dropout"] = 0
    c["train"].update(precision="bf16-mixed", recompute=recompute, microBatch=micro, globalBatch=micro)
    c["parallel"].update(dp=1, tp=tp, zero=0)
    return c


class _Casts(TorchDispatchMode):
    """Every bf16 copy autocast makes (aten._to_copy), by weak reference: which ones its cast cache alone keeps."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[tuple[weakref.ref[torch.Tensor], int]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten._to_copy.default and out.dtype == torch.bfloat16:
            self.made.append((weakref.ref(out), out.untyped_storage().nbytes()))
        return out


def forward_under_autocast(model: CausalLM, config: dict[str, Any], micro: int) -> tuple[int, torch.Tensor]:
    """Bytes alive at the end of one forward under CPU autocast beyond the model states (the same tokens on
    every rank): the storages autograd saved, as the engine counts them, plus the bf16 copies only autocast's
    cast cache keeps (freed when the autocast context exits; on CUDA they are part of the allocator's peak)."""
    vocab, seq = config["model"]["vocab"], config["model"]["seqLen"]
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, vocab, (micro, seq), generator=g)
    targets = torch.randint(0, vocab, (micro, seq), generator=g)
    counter = SavedTensorCounter()
    casts = _Casts()
    with counter.counting(), torch.autocast("cpu", torch.bfloat16):
        with casts:
            loss = model(tokens, targets)
        alive = [(ref, n) for ref, n in casts.made if ref() is not None]
    cached_only = sum(n for ref, n in alive if ref() is None)
    return counter.bytes + cached_only, loss


def _tp_rank(rank: int, port: int, config: dict[str, Any], micro: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        c = config
        model = CausalLM(model_shape(c["model"]), TpGroup(2, rank, dist.group.WORLD), c["train"]["recompute"])
        model.init_weights(1)
        model.train()
        saved, loss = forward_under_autocast(model, c, micro)
        loss.backward()
        Path(out, f"rank{rank}").write_text(str(saved))
        dist.barrier()  # neither rank tears gloo down while the other is still in its last collective
    finally:
        dist.destroy_process_group()


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
    saved, loss = forward_under_autocast(model, config, micro)
    assert loss.dtype == torch.float32
    loss.backward()
    opt.step()
    assert saved == plan["activations"], f"measured {saved}, predicted {plan['activations']}"
    params = nbytes(model.parameters())
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert (params, nbytes(p.grad for p in model.parameters()), optimizer_bytes(opt)) == (
        plan["params"],
        plan["grads"],
        plan["optimizer"],
    )
    assert nbytes(model.buffers()) == plan["buffers"]


@pytest.mark.parametrize("recompute", ["none", "selective", "full"])
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_autocast_saved_bytes_at_tp2(family: str, recompute: str, small_config: dict[str, Any], tmp_path: Path) -> None:
    config = bf16_config(small_config, family, recompute, 2, tp=2)
    plan = predicted(config)
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    mp.spawn(_tp_rank, (port, config, 2, str(tmp_path)), nprocs=2)
    measured = [int((tmp_path / f"rank{r}").read_text()) for r in range(2)]
    assert measured == [plan["activations"]] * 2, f"measured {measured}, predicted {plan['activations']}"
