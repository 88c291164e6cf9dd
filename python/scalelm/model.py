"""GPT-2 and Llama for the torch engine, with HuggingFace parameter names and Megatron tensor parallelism.

GPT-2 follows runtime/model/gpt.ts exactly: learned positions, pre-LayerNorm blocks (eps 1e-5), a fused QKV
projection in Conv1D layout (y = x·W + b, W [in, out]), GELU (tanh), residual dropout after attn.c_proj and
after the MLP, attention-probability dropout, no embedding dropout, an output layer tied to wte, and the mean
cross entropy. Initialisation is the local engine's: N(0, 0.02), residual projections N(0, 0.02/√(2L)), drawn
per parameter name from the same seeded stream, so a fresh run starts from the local engine's weights.
Llama: RoPE (θ = 10000), SwiGLU, RMSNorm (eps 1e-5), no biases, untied lm_head, grouped-query attention, in
nn.Linear layout ([out, in]) as HuggingFace's LlamaForCausalLM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .rng import Rng
from .tp import TpGroup, copy_to_region, reduce_from_region, slice_shard, tp_vocab

EPS = 1e-5
ROPE_THETA = 10000.0
# Above this many parameters the exact port of the local engine's (pure Python) initialisation is too slow;
# larger models draw from torch's generator seeded per parameter name instead.
EXACT_INIT_LIMIT = 20_000_000


class ModelError(Exception):
    pass


@dataclass(frozen=True)
class ParamSpec:
    name: str
    shape: tuple[int, ...]
    init: str  # "normal" | "zeros" | "ones"
    std: float
    decay: bool


@dataclass(frozen=True)
class Shape:
    family: str  # "gpt2" | "llama"
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    positions: int
    dropout: float

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def model_shape(m: dict[str, Any]) -> Shape:
    """The family of a resolved config's model, or one error naming every field that does not fit one."""
    gpt2 = {
        "activation": "gelu",
        "norm": "layernorm",
        "tiedEmbeddings": True,
        "bias": True,
        "positionEmbedding": "learned",
    }
    llama = {
        "activation": "swiglu",
        "norm": "rmsnorm",
        "tiedEmbeddings": False,
        "bias": False,
        "positionEmbedding": "rope",
    }
    family = "gpt2" if m.get("activation") == "gelu" else "llama"
    want = gpt2 if family == "gpt2" else llama
    bad = [f"model.{k}={m.get(k)!r} (use {v!r})" for k, v in want.items() if m.get(k) != v]
    if family == "gpt2" and m["kvHeads"] != m["heads"]:
        bad.append(f"model.kvHeads={m['kvHeads']} (GPT-2 has kvHeads = heads = {m['heads']})")
    if m["hidden"] % m["heads"]:
        bad.append(f"model.heads={m['heads']} does not divide model.hidden={m['hidden']}")
    if m["heads"] % m["kvHeads"]:
        bad.append(f"model.kvHeads={m['kvHeads']} does not divide model.heads={m['heads']}")
    if bad:
        raise ModelError(
            f"the torch engine trains GPT-2-style and Llama-style models; as a {family} this config has "
            + "; ".join(bad)
        )
    return Shape(
        family,
        m["layers"],
        m["hidden"],
        m["heads"],
        m["kvHeads"],
        m["ffnHidden"],
        m["vocab"],
        m["seqLen"],
        float(m.get("dropout", 0)),
    )


def param_specs(s: Shape) -> list[ParamSpec]:
    """Every parameter's full shape, initialisation and decay, in the local engine's order."""
    C, F_, L = s.hidden, s.ffn, s.layers
    out: list[ParamSpec] = []
    if s.family == "gpt2":
        res = 0.02 / math.sqrt(2 * L)
        out += [
            ParamSpec("wte.weight", (s.vocab, C), "normal", 0.02, True),
            ParamSpec("wpe.weight", (s.positions, C), "normal", 0.02, True),
        ]

        def lin(n: str, i: int, o: int, std: float = 0.02) -> list[ParamSpec]:
            return [
                ParamSpec(f"{n}.weight", (i, o), "normal", std, True),
                ParamSpec(f"{n}.bias", (o,), "zeros", 0, False),
            ]

        def ln(n: str) -> list[ParamSpec]:
            return [ParamSpec(f"{n}.weight", (C,), "ones", 0, False), ParamSpec(f"{n}.bias", (C,), "zeros", 0, False)]

        for i in range(L):
            p = f"h.{i}"
            out += ln(f"{p}.ln_1") + lin(f"{p}.attn.c_attn", C, 3 * C) + lin(f"{p}.attn.c_proj", C, C, res)
            out += ln(f"{p}.ln_2") + lin(f"{p}.mlp.c_fc", C, F_) + lin(f"{p}.mlp.c_proj", F_, C, res)
        out += ln("ln_f")
        return out
    hd, KV = s.head_dim, s.kv_heads * s.head_dim
    res = 0.02 / math.sqrt(2 * L)
    out.append(ParamSpec("model.embed_tokens.weight", (s.vocab, C), "normal", 0.02, True))
    for i in range(L):
        p = f"model.layers.{i}"
        out += [
            ParamSpec(f"{p}.input_layernorm.weight", (C,), "ones", 0, False),
            ParamSpec(f"{p}.self_attn.q_proj.weight", (s.heads * hd, C), "normal", 0.02, True),
            ParamSpec(f"{p}.self_attn.k_proj.weight", (KV, C), "normal", 0.02, True),
            ParamSpec(f"{p}.self_attn.v_proj.weight", (KV, C), "normal", 0.02, True),
            ParamSpec(f"{p}.self_attn.o_proj.weight", (C, s.heads * hd), "normal", res, True),
            ParamSpec(f"{p}.post_attention_layernorm.weight", (C,), "ones", 0, False),
            ParamSpec(f"{p}.mlp.gate_proj.weight", (F_, C), "normal", 0.02, True),
            ParamSpec(f"{p}.mlp.up_proj.weight", (F_, C), "normal", 0.02, True),
            ParamSpec(f"{p}.mlp.down_proj.weight", (C, F_), "normal", res, True),
        ]
    out += [
        ParamSpec("model.norm.weight", (C,), "ones", 0, False),
        ParamSpec("lm_head.weight", (s.vocab, C), "normal", 0.02, True),
    ]
    return out


def initial_value(spec: ParamSpec, seed: int, exact: bool) -> torch.Tensor:
    """The local engine's initial values (runtime/model/params.ts initialValues) of one parameter."""
    if spec.init == "zeros":
        return torch.zeros(spec.shape)
    if spec.init == "ones":
        return torch.ones(spec.shape)
    n = math.prod(spec.shape)
    if exact:
        rng = Rng(seed, f"init/{spec.name}")
        vals = [rng.normal() * spec.std for _ in range(n)]
        return torch.tensor(vals, dtype=torch.float64).to(torch.float32).reshape(spec.shape)
    from .rng import hash_string, mix

    g = torch.Generator().manual_seed(mix(seed, hash_string(f"init/{spec.name}")))
    return torch.randn(spec.shape, generator=g) * spec.std


def vocab_parallel_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, tp: TpGroup, first: int, vocab: int
) -> torch.Tensor:
    """Mean cross entropy of [N, V/tp] local logits without gathering them (padding columns masked out)."""
    if tp.size == 1:
        return F.cross_entropy(logits.float(), targets)
    logits = logits.float()
    cols = torch.arange(first, first + logits.shape[-1], device=logits.device)
    logits = logits.masked_fill((cols >= vocab)[None, :], float("-inf"))
    m = logits.detach().max(-1).values
    tp.all_reduce(m, torch.distributed.ReduceOp.MAX)
    shifted = logits - m[:, None]
    sumexp = reduce_from_region(shifted.exp().sum(-1), tp)
    local = targets - first
    inside = (local >= 0) & (local < logits.shape[-1])
    picked = shifted.gather(-1, local.clamp(0, logits.shape[-1] - 1)[:, None])[:, 0] * inside
    target_logit = reduce_from_region(picked, tp)
    return (sumexp.log() - target_logit).mean()


class _Param(nn.Module):
    """A module holding one named `weight` (and `bias`): HuggingFace's naming without their layer code."""

    weight: nn.Parameter
    bias: nn.Parameter  # only where the family has biases

    def __init__(self, wshape: tuple[int, ...], bshape: tuple[int, ...] | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(wshape))
        if bshape is not None:
            self.bias = nn.Parameter(torch.empty(bshape))


class _Group(nn.Module):
    """Named children only (HuggingFace's attn, mlp, self_attn, model levels)."""

    def __init__(self, **children: nn.Module) -> None:
        super().__init__()
        for k, v in children.items():
            self.add_module(k, v)

    def p(self, name: str) -> _Param:
        m = self.get_submodule(name)
        assert isinstance(m, _Param)
        return m


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)


class GptBlock(nn.Module):
    def __init__(self, s: Shape, tp: TpGroup, recompute: str) -> None:
        super().__init__()
        C, t = s.hidden, tp.size
        self.s, self.tp, self.selective = s, tp, recompute == "selective"
        self.ln_1 = _Param((C,), (C,))
        self.attn = _Group(c_attn=_Param((C, 3 * C // t), (3 * C // t,)), c_proj=_Param((C // t, C), (C,)))
        self.ln_2 = _Param((C,), (C,))
        self.mlp = _Group(c_fc=_Param((C, s.ffn // t), (s.ffn // t,)), c_proj=_Param((s.ffn // t, C), (C,)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, tp = self.s, self.tp
        B, T, C = x.shape
        heads = s.heads // tp.size
        p = s.dropout if self.training else 0.0
        a = self.attn
        h = F.layer_norm(x, (C,), self.ln_1.weight, self.ln_1.bias, EPS)
        h = copy_to_region(h, tp)
        qkv = torch.addmm(a.p("c_attn").bias, h.reshape(B * T, C), a.p("c_attn").weight).reshape(
            B, T, 3, heads, s.head_dim
        )
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
        y = (
            checkpoint(_attention, q, k, v, p, use_reentrant=False)
            if self.selective and self.training
            else _attention(q, k, v, p)
        )
        y = y.transpose(1, 2).reshape(B * T, heads * s.head_dim) @ a.p("c_proj").weight
        y = reduce_from_region(y, tp) + a.p("c_proj").bias
        x = x + F.dropout(y.reshape(B, T, C), p, self.training)
        h = F.layer_norm(x, (C,), self.ln_2.weight, self.ln_2.bias, EPS)
        h = copy_to_region(h, tp)
        m = self.mlp
        h = F.gelu(torch.addmm(m.p("c_fc").bias, h.reshape(B * T, C), m.p("c_fc").weight), approximate="tanh")
        y = reduce_from_region(h @ m.p("c_proj").weight, tp) + m.p("c_proj").bias
        return x + F.dropout(y.reshape(B, T, C), p, self.training)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, -1)
    return torch.cat((-b, a), -1)


def _rms_norm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    dtype = x.dtype
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + EPS)
    return w * h.to(dtype)


class LlamaBlock(nn.Module):
    def __init__(self, s: Shape, tp: TpGroup, recompute: str) -> None:
        super().__init__()
        C, t, hd = s.hidden, tp.size, s.head_dim
        self.s, self.tp, self.selective = s, tp, recompute == "selective"
        self.input_layernorm = _Param((C,), None)
        self.self_attn = _Group(
            q_proj=_Param((s.heads * hd // t, C), None),
            k_proj=_Param((s.kv_heads * hd // t, C), None),
            v_proj=_Param((s.kv_heads * hd // t, C), None),
            o_proj=_Param((C, s.heads * hd // t), None),
        )
        self.post_attention_layernorm = _Param((C,), None)
        self.mlp = _Group(
            gate_proj=_Param((s.ffn // t, C), None),
            up_proj=_Param((s.ffn // t, C), None),
            down_proj=_Param((C, s.ffn // t), None),
        )

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        s, tp, a, m = self.s, self.tp, self.self_attn, self.mlp
        B, T, _ = x.shape
        hd, heads, kv = s.head_dim, s.heads // tp.size, s.kv_heads // tp.size
        p = s.dropout if self.training else 0.0
        h = copy_to_region(_rms_norm(x, self.input_layernorm.weight), tp)
        q = F.linear(h, a.p("q_proj").weight).view(B, T, heads, hd).transpose(1, 2)
        k = F.linear(h, a.p("k_proj").weight).view(B, T, kv, hd).transpose(1, 2)
        v = F.linear(h, a.p("v_proj").weight).view(B, T, kv, hd).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if kv != heads:
            k = k.repeat_interleave(heads // kv, dim=1)
            v = v.repeat_interleave(heads // kv, dim=1)
        y = (
            checkpoint(_attention, q, k, v, p, use_reentrant=False)
            if self.selective and self.training
            else _attention(q, k, v, p)
        )
        y = reduce_from_region(F.linear(y.transpose(1, 2).reshape(B, T, heads * hd), a.p("o_proj").weight), tp)
        x = x + F.dropout(y, p, self.training)
        h = copy_to_region(_rms_norm(x, self.post_attention_layernorm.weight), tp)
        y = F.linear(
            F.silu(F.linear(h, m.p("gate_proj").weight)) * F.linear(h, m.p("up_proj").weight), m.p("down_proj").weight
        )
        return x + F.dropout(reduce_from_region(y, tp), p, self.training)


class CausalLM(nn.Module):
    """Either family; forward(tokens, targets) returns the mean cross entropy (replicated over the TP group)."""

    inv_freq: torch.Tensor

    def __init__(self, s: Shape, tp: TpGroup | None = None, recompute: str = "none") -> None:
        super().__init__()
        tp = tp or TpGroup()
        self.s, self.tp, self.recompute = s, tp, recompute
        if s.family == "gpt2":
            if s.heads % tp.size or s.ffn % tp.size:
                raise ModelError(f"parallel.tp={tp.size} must divide model.heads={s.heads} and model.ffnHidden={s.ffn}")
        elif s.kv_heads % tp.size or s.ffn % tp.size:
            raise ModelError(
                f"parallel.tp={tp.size} must divide model.kvHeads={s.kv_heads} and model.ffnHidden={s.ffn}"
            )
        self.padded_vocab = tp_vocab(s.vocab, tp.size)
        vrows = self.padded_vocab // tp.size
        self.vocab_first = tp.rank * vrows
        C = s.hidden
        if s.family == "gpt2":
            self.wte = _Param((vrows, C), None)
            self.wpe = _Param((s.positions, C), None)
            self.h = nn.ModuleList(GptBlock(s, tp, recompute) for _ in range(s.layers))
            self.ln_f = _Param((C,), (C,))
        else:
            self.model = _Group(
                embed_tokens=_Param((vrows, C), None),
                layers=nn.ModuleList(LlamaBlock(s, tp, recompute) for _ in range(s.layers)),
                norm=_Param((C,), None),
            )
            self.lm_head = _Param((vrows, C), None)
            inv = 1.0 / (ROPE_THETA ** (torch.arange(0, s.head_dim, 2, dtype=torch.int64).float() / s.head_dim))
            self.register_buffer("inv_freq", inv, persistent=False)

    def blocks(self) -> nn.ModuleList:
        m = self.h if self.s.family == "gpt2" else self.model.get_submodule("layers")
        assert isinstance(m, nn.ModuleList)
        return m

    def load_full(self, values: dict[str, torch.Tensor]) -> None:
        """Sets every parameter from full (unsharded) tensors: this rank's shard of each."""
        named = dict(self.named_parameters())
        with torch.no_grad():
            for spec in param_specs(self.s):
                v = values[spec.name]
                shard = slice_shard(spec.name, v.float(), self.tp.size, self.tp.rank, self.padded_vocab)
                named[spec.name].copy_(shard.reshape(named[spec.name].shape))

    def init_weights(self, seed: int) -> None:
        specs = param_specs(self.s)
        exact = sum(math.prod(p.shape) for p in specs) <= EXACT_INIT_LIMIT
        self.load_full({p.name: initial_value(p, seed, exact) for p in specs})

    def _embed(self, weight: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        if self.tp.size == 1:
            return F.embedding(tokens, weight)
        local = tokens - self.vocab_first
        inside = (local >= 0) & (local < weight.shape[0])
        e = F.embedding(local.clamp(0, weight.shape[0] - 1), weight) * inside[..., None]
        return reduce_from_region(e, self.tp)

    def _run_block(self, block: nn.Module, *args: torch.Tensor) -> torch.Tensor:
        if self.recompute == "full" and self.training:
            return checkpoint(block, *args, use_reentrant=False)  # type: ignore[no-any-return]
        return block(*args)  # type: ignore[no-any-return]

    def hidden_states(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The final normalised hidden states [B, T, C] and the output weight (this rank's vocabulary rows)."""
        T = tokens.shape[1]
        if self.s.positions < T:
            raise ModelError(f"sequence length {T} exceeds the model's {self.s.positions} positions")
        if self.s.family == "gpt2":
            x = self._embed(self.wte.weight, tokens) + self.wpe.weight[:T]
            for b in self.h:
                x = self._run_block(b, x)
            x = F.layer_norm(x, (self.s.hidden,), self.ln_f.weight, self.ln_f.bias, EPS)
            return x, self.wte.weight
        x = self._embed(self.model.p("embed_tokens").weight, tokens)
        freqs = torch.outer(torch.arange(T, device=x.device, dtype=torch.float32), self.inv_freq.float())
        emb = torch.cat((freqs, freqs), -1)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        for b in self.blocks():
            x = self._run_block(b, x, cos, sin)
        return _rms_norm(x, self.model.p("norm").weight), self.lm_head.weight

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x, w = self.hidden_states(tokens)
        x = copy_to_region(x, self.tp)
        logits = x.reshape(-1, x.shape[-1]) @ w.t()
        return vocab_parallel_cross_entropy(logits, targets.reshape(-1), self.tp, self.vocab_first, self.s.vocab)
