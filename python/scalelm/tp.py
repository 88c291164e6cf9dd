"""Megatron tensor parallelism with explicit autograd functions, and how each parameter is split.

f (copy to the tensor-parallel region): identity forward, all-reduce of the gradient backward; g (reduce from
the region): all-reduce forward, identity backward. The split rules mirror runtime/parallel/shards.ts so a
shard here is exactly the local engine's shard: GPT-2's fused c_attn is split per head ([Q_r | K_r | V_r]),
never as a column split of concat(Q, K, V); the vocabulary is padded to a multiple of 128·tp.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .commtime import CommTimer


@dataclass
class TpGroup:
    size: int = 1
    rank: int = 0
    group: Any = None  # a torch.distributed ProcessGroup when size > 1
    # The rank's comm gauge, which times this group's all-reduces as all-reduce-tp (None: a model alone).
    timer: CommTimer | None = None

    def all_reduce(self, t: torch.Tensor, op: Any = None) -> None:
        op = dist.ReduceOp.SUM if op is None else op
        if self.timer is None:
            dist.all_reduce(t, op=op, group=self.group)
            return
        self.timer.call(
            "all-reduce-tp", t.numel() * t.element_size(), lambda: dist.all_reduce(t, op=op, group=self.group)
        )


class _CopyToRegion(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, tp: TpGroup) -> torch.Tensor:
        ctx.tp = tp
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        g = grad.contiguous().clone()
        ctx.tp.all_reduce(g)
        return g, None


class _ReduceFromRegion(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, tp: TpGroup) -> torch.Tensor:
        y = x.contiguous().clone()
        tp.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def copy_to_region(x: torch.Tensor, tp: TpGroup) -> torch.Tensor:
    return x if tp.size == 1 else _CopyToRegion.apply(x, tp)  # type: ignore[no-untyped-call]


def reduce_from_region(x: torch.Tensor, tp: TpGroup) -> torch.Tensor:
    return x if tp.size == 1 else _ReduceFromRegion.apply(x, tp)  # type: ignore[no-untyped-call]


def tp_vocab(vocab: int, tp: int) -> int:
    if tp == 1:
        return vocab
    m = 128 * tp
    return -(-vocab // m) * m


def shard_rule(name: str) -> str:
    """replicate | rows (dim 0) | cols (last dim) | qkv (GPT-2's fused per-head split) | vocab (padded rows)."""
    if name in ("wte.weight", "model.embed_tokens.weight", "lm_head.weight"):
        return "vocab"
    if re.fullmatch(r"h\.\d+\.attn\.c_attn\.(weight|bias)", name):
        return "qkv"
    if re.fullmatch(r"h\.\d+\.mlp\.c_fc\.(weight|bias)", name):
        return "cols"
    if re.fullmatch(r"h\.\d+\.(attn|mlp)\.c_proj\.weight", name):
        return "rows"
    if re.fullmatch(r"model\.layers\.\d+\.(self_attn\.[qkv]_proj|mlp\.(gate|up)_proj)\.weight", name):
        return "rows"
    if re.fullmatch(r"model\.layers\.\d+\.(self_attn\.o_proj|mlp\.down_proj)\.weight", name):
        return "cols"
    return "replicate"


def is_sharded(name: str, tp: int) -> bool:
    return tp > 1 and shard_rule(name) != "replicate"


def slice_shard(name: str, full: torch.Tensor, tp: int, rank: int, padded_vocab: int) -> torch.Tensor:
    """This rank's shard of a full tensor (a new tensor)."""
    rule = "replicate" if tp == 1 else shard_rule(name)
    if rule == "replicate":
        return full.clone()
    if rule == "vocab":
        rows = padded_vocab // tp
        out = full.new_zeros((rows, *full.shape[1:]))
        first = rank * rows
        real = max(0, min(rows, full.shape[0] - first))
        out[:real] = full[first : first + real]
        return out
    if rule == "rows":
        return full.chunk(tp, 0)[rank].clone()
    if rule == "cols":
        return full.chunk(tp, -1)[rank].clone()
    # qkv: each of the three sections split per head
    return torch.cat([sec.chunk(tp, -1)[rank] for sec in full.chunk(3, -1)], -1).contiguous()


def join_shards(name: str, shards: list[torch.Tensor], vocab: int) -> torch.Tensor:
    """The full tensor from every rank's shard (in tensor-parallel rank order)."""
    tp = len(shards)
    rule = "replicate" if tp == 1 else shard_rule(name)
    if rule == "replicate":
        return shards[0]
    if rule == "vocab":
        return torch.cat(shards, 0)[:vocab].contiguous()
    if rule == "rows":
        return torch.cat(shards, 0)
    if rule == "cols":
        return torch.cat(shards, -1)
    sections = [torch.cat([s.chunk(3, -1)[k] for s in shards], -1) for k in range(3)]
    return torch.cat(sections, -1).contiguous()
