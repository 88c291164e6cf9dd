"""What the planner needs to know about a monitored run: the model's shape and the layout it trains in.

The shape is the HuggingFace config's own fields (the ones runtime/config/huggingface.ts reads), so the
coordinator plans it exactly as `scalelm estimate config.json` would. The layout is what can be seen from
the objects the Monitor was given: the wrapper (DDP, FSDP, FSDP2's fully_shard, a DeepSpeed engine), the
parameters (DTensor meshes: tp), the optimizer (ZeroRedundancyOptimizer: ZeRO-1) and the first forward's
inputs (micro-batch, sequence length, autocast). What cannot be seen is left out, never guessed here: the
coordinator says in its log what it assumed instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

# The HuggingFace config keys runtime/config/huggingface.ts reads (GPT-2, GPT-NeoX, Llama, Mistral, Qwen2).
HF_KEYS = (
    "model_type",
    "architectures",
    "_name_or_path",
    "n_layer",
    "n_embd",
    "n_head",
    "n_inner",
    "n_positions",
    "n_ctx",
    "activation_function",
    "vocab_size",
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "max_position_embeddings",
    "hidden_act",
    "tie_word_embeddings",
    # What the planner's HuggingFace activation model reads (runtime/config/huggingface.ts hfActivationModel).
    "embd_pdrop",
    "resid_pdrop",
    "attn_pdrop",
    "attention_dropout",
    "reorder_and_upcast_attn",
    "head_dim",
)

# Layout keys a caller (an integration, or the user) may set: they override what is detected.
LAYOUT_KEYS = ("strategy", "zero", "tp", "microBatch", "seqLen", "gradAccum", "precision")


def unwrap(model: nn.Module) -> nn.Module:
    """The user's model inside DDP / FSDP1 / a DeepSpeed engine (each keeps it as `.module`)."""
    seen = 0
    while isinstance(getattr(model, "module", None), nn.Module) and seen < 8:
        model = model.module  # type: ignore[assignment]
        seen += 1
    return model


def hf_shape(model: nn.Module) -> dict[str, Any] | None:
    """The HuggingFace config's planning fields, or None when the model has no HF config."""
    cfg = getattr(unwrap(model), "config", None)
    to_dict = getattr(cfg, "to_dict", None)
    if not callable(to_dict):
        return None
    d = to_dict()
    if not isinstance(d, dict) or not isinstance(d.get("model_type"), str):
        return None
    out: dict[str, Any] = {}
    for k in HF_KEYS:
        v = d.get(k)
        if isinstance(v, bool | int | float | str) and not (isinstance(v, str) and len(v) > 200):
            out[k] = v
        elif k == "architectures" and isinstance(v, list) and all(isinstance(a, str) for a in v):
            out[k] = v[:4]
    return out


def _mesh_tp(p: torch.Tensor) -> int | None:
    """A DTensor parameter's tensor-parallel degree: its mesh dimension named "tp" (else None)."""
    mesh = getattr(p, "device_mesh", None)
    names = getattr(mesh, "mesh_dim_names", None)
    if mesh is None or not names or "tp" not in names:
        return None
    return int(mesh.size(list(names).index("tp")))


def detect_layout(model: nn.Module, optimizer: torch.optim.Optimizer | None, world: int) -> dict[str, Any]:
    """What the wrapper, parameters and optimizer show (see the module's docstring)."""
    out: dict[str, Any] = {"world": world}
    from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel
    from torch.nn.parallel import DistributedDataParallel

    deepspeed_stage = getattr(model, "zero_optimization_stage", None)
    if callable(deepspeed_stage):
        out["strategy"] = "deepspeed"
        out["zero"] = int(deepspeed_stage())
        micro = getattr(model, "train_micro_batch_size_per_gpu", None)
        if callable(micro):
            out["microBatch"] = int(micro())
        accum = getattr(model, "gradient_accumulation_steps", None)
        if callable(accum):
            out["gradAccum"] = int(accum())
    elif isinstance(model, DistributedDataParallel):
        out["strategy"], out["zero"] = "ddp", 0
    elif isinstance(model, FullyShardedDataParallel):
        # FULL_SHARD / HYBRID_SHARD shard parameters (ZeRO-3), SHARD_GRAD_OP gradients and states (ZeRO-2).
        name = str(getattr(model, "sharding_strategy", "FULL_SHARD")).rsplit(".", 1)[-1]
        out["strategy"] = "fsdp"
        out["zero"] = {"NO_SHARD": 0, "SHARD_GRAD_OP": 2, "_HYBRID_SHARD_ZERO2": 2}.get(name, 3)
    elif any(isinstance(m, FSDPModule) for m in model.modules()):
        out["strategy"], out["zero"] = "fsdp2", 3
    inner = unwrap(model)
    params = list(inner.parameters())
    tps = {t for t in (_mesh_tp(p) for p in params) if t}
    if tps:
        out["tp"] = max(tps)
    elif not any(type(p).__name__ == "DTensor" for p in params) and out.get("strategy") in ("ddp", "fsdp", None):
        out["tp"] = 1  # plain tensors under DDP/FSDP1 (or none): no tensor parallelism torch could show
    elif out.get("strategy") == "fsdp2" and all(
        getattr(getattr(p, "device_mesh", None), "ndim", 1) == 1 for p in params
    ):
        out["tp"] = 1  # fully_shard on a one-dimensional mesh: every DTensor dimension is data-parallel
    if "strategy" not in out:
        if any(type(p).__name__ == "DTensor" for p in params):
            out["strategy"] = "dtensor"
        elif world == 1:
            out["strategy"] = "single"
    if optimizer is not None:
        from torch.distributed.optim import ZeroRedundancyOptimizer

        if isinstance(optimizer, ZeroRedundancyOptimizer):
            out["zero"] = max(1, int(out.get("zero", 0)))
            out.setdefault("strategy", "zero1")
            inner_opt = getattr(optimizer, "optim", None)
            optimizer = inner_opt if isinstance(inner_opt, torch.optim.Optimizer) else optimizer
        kind = type(optimizer).__name__.lower()
        if kind in ("adamw", "adam", "sgd"):
            out["optimizer"] = kind
            if kind == "sgd" and optimizer.param_groups:
                out["momentum"] = float(optimizer.param_groups[0].get("momentum", 0.0) or 0.0)
    # transformers 5 renamed is_gradient_checkpointing (the old name warns); ask the new name first.
    checkpointing = getattr(inner, "is_activation_checkpointing", None)
    if checkpointing is None:
        checkpointing = getattr(inner, "is_gradient_checkpointing", None)
    if checkpointing is True:
        out["recompute"] = "full"
    cfg = getattr(inner, "config", None)
    attn = getattr(cfg, "_attn_implementation", None)
    if isinstance(attn, str):
        out["attention"] = attn
    dtypes = {p.dtype for p in params if p.is_floating_point()}
    if dtypes == {torch.float32}:
        out["paramDtype"] = "fp32"
    elif dtypes == {torch.bfloat16}:
        out["paramDtype"] = "bf16"
    elif dtypes == {torch.float16}:
        out["paramDtype"] = "fp16"
    return out


def _token_ids(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> torch.Tensor | None:
    """A forward's token ids: input_ids, else its first tensor argument."""
    ids = kwargs.get("input_ids")
    if not isinstance(ids, torch.Tensor):
        ids = next((a for a in args if isinstance(a, torch.Tensor)), None)
    return ids if isinstance(ids, torch.Tensor) else None


def input_shape(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[int, ...] | None:
    """The shape of a forward's token ids (what its activations depend on), None when it has none."""
    ids = _token_ids(args, kwargs)
    return None if ids is None else tuple(ids.shape)


def forward_inputs(args: tuple[Any, ...], kwargs: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Micro-batch and sequence length from the first forward's token ids, and the autocast precision."""
    out: dict[str, Any] = {}
    ids = _token_ids(args, kwargs)
    if ids is not None and ids.dim() >= 1:
        out["microBatch"] = int(ids.shape[0])
        if ids.dim() == 2 and not ids.is_floating_point():
            out["seqLen"] = int(ids.shape[1])
    if torch.is_autocast_enabled(device.type):
        dtype = torch.get_autocast_dtype(device.type)
        out["precision"] = "bf16-mixed" if dtype == torch.bfloat16 else "fp16-mixed" if dtype == torch.float16 else None
        if out["precision"] is None:
            del out["precision"]
    return out
