#!/usr/bin/env python3
"""PyTorch reference for ScaleLM's trainer: GPT-2 written out for the test (HF layout: Conv1D weights
[in, out], tanh GELU "gelu_new", tied output layer), AdamW with decay on matrices and embeddings only,
clip_grad_norm_, gradient accumulation, warm-up + cosine schedule. Reads the spec, the initial weights
(safetensors with HF GPT-2 names) and the exact token batches ScaleLM trained on; prints JSON with the
loss and gradient norm of every step, and the loss of a checkpoint (HF config.json + model.safetensors)
on a held batch. Needs only torch and numpy (Debian: python3-torch)."""
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        assert e["dtype"] == "F32", (name, e["dtype"])
        b, t = e["data_offsets"]
        arr = np.frombuffer(data[base + b : base + t], dtype="<f4").reshape(e["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


class Conv1D(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class Block(nn.Module):
    def __init__(self, h, heads, ffn, eps):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(h, eps=eps)
        self.attn = nn.Module()
        self.attn.c_attn = Conv1D(h, 3 * h)
        self.attn.c_proj = Conv1D(h, h)
        self.ln_2 = nn.LayerNorm(h, eps=eps)
        self.mlp = nn.Module()
        self.mlp.c_fc = Conv1D(h, ffn)
        self.mlp.c_proj = Conv1D(ffn, h)

    def forward(self, x):
        B, T, C = x.shape
        H, D = self.heads, C // self.heads
        q, k, v = self.attn.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D))
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        att = F.softmax(att.masked_fill(~mask, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.attn.c_proj(y)
        return x + self.mlp.c_proj(gelu_new(self.mlp.c_fc(self.ln_2(x))))


class GPT2(nn.Module):
    def __init__(self, layers, hidden, heads, vocab, positions, ffn, eps):
        super().__init__()
        self.wte = nn.Embedding(vocab, hidden)
        self.wpe = nn.Embedding(positions, hidden)
        self.h = nn.ModuleList([Block(hidden, heads, ffn, eps) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(hidden, eps=eps)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for block in self.h:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


def load_weights(model, tensors):
    named = dict(model.named_parameters())
    missing = set(named) - set(tensors)
    assert not missing, f"missing {sorted(missing)}"
    with torch.no_grad():
        for name, p in named.items():
            assert tuple(p.shape) == tuple(tensors[name].shape), (name, p.shape, tensors[name].shape)
            p.copy_(tensors[name])


def lr_at(s, step):
    it = step - 1
    if it < s["warmupSteps"]:
        return s["lr"] * (it + 1) / s["warmupSteps"]
    progress = min(1.0, (it - s["warmupSteps"]) / max(1, s["steps"] - s["warmupSteps"]))
    return s["minLr"] + 0.5 * (s["lr"] - s["minLr"]) * (1 + math.cos(math.pi * progress))


def main(spec_path):
    with open(spec_path) as f:
        s = json.load(f)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    m = s["model"]
    make = lambda: GPT2(m["layers"], m["hidden"], m["heads"], m["vocab"], m["positions"], m["ffnHidden"], m["eps"])
    model = make()
    load_weights(model, load_safetensors(s["initWeights"]))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": s["weightDecay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=s["lr"], betas=(s["beta1"], s["beta2"]), eps=s["eps"],
    )
    B, T, A = s["microBatch"], s["seq"], s["accumulation"]
    batches = np.fromfile(s["batches"], dtype="<i4").reshape(s["steps"], A, 2, B, T)
    losses, norms = [], []
    for step in range(1, s["steps"] + 1):
        for g in opt.param_groups:
            g["lr"] = lr_at(s, step)
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for a in range(A):
            idx = torch.from_numpy(batches[step - 1, a, 0].astype(np.int64))
            tgt = torch.from_numpy(batches[step - 1, a, 1].astype(np.int64))
            loss = model(idx, tgt)
            (loss / A).backward()
            total += loss.item()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), s["gradClip"])
        opt.step()
        losses.append(total / A)
        norms.append(float(norm))
    result = {"losses": losses, "gradNorms": norms}
    if s.get("checkpoint"):
        # Load ScaleLM's final checkpoint by its HF names and config.json, as another tool would.
        with open(s["checkpoint"] + "/config.json") as f:
            cfg = json.load(f)
        ck = GPT2(cfg["n_layer"], cfg["n_embd"], cfg["n_head"], cfg["vocab_size"], cfg["n_positions"], cfg["n_inner"] or 4 * cfg["n_embd"], cfg["layer_norm_epsilon"])
        load_weights(ck, load_safetensors(s["checkpoint"] + "/model.safetensors"))
        held = np.fromfile(s["heldBatch"], dtype="<i4").reshape(2, B, T)
        with torch.no_grad():
            result["checkpointLoss"] = ck(torch.from_numpy(held[0].astype(np.int64)), torch.from_numpy(held[1].astype(np.int64))).item()
            result["referenceFinalLoss"] = model(torch.from_numpy(held[0].astype(np.int64)), torch.from_numpy(held[1].astype(np.int64))).item()
    result["torch"] = torch.__version__
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
