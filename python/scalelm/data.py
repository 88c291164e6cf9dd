"""The local engine's data (runtime/train/data.ts), row for row.

A batch row is a pure function of (seed, step, row): the same windows of the same token stream on both engines,
after a resume, and for any split of a step's rows over micro-batches and data-parallel ranks.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch

from .rng import Rng, uniform_at


class DataError(Exception):
    pass


@dataclass
class TokenStream:
    description: str
    train: torch.Tensor  # int64 [n]
    val: torch.Tensor
    vocab: int


def synthetic_tokens(vocab: int, seed: int, length: int) -> torch.Tensor:
    """A random sparse Markov chain: four possible successors per token (as the local engine's)."""
    rng = Rng(seed, "data/synthetic")
    successors = [rng.next_uint32() % vocab for _ in range(vocab * 4)]
    out = [0] * length
    t = rng.next_uint32() % vocab
    for i in range(length):
        out[i] = t
        t = successors[t * 4 + (rng.next_uint32() & 3)]
    return torch.tensor(out, dtype=torch.int64)


def load_tokens(
    data: dict[str, Any], base_dir: str, vocab: int, seq_len: int, seed: int, need_val: bool
) -> TokenStream:
    source = data.get("source", "synthetic")
    if source == "synthetic":
        all_tokens = synthetic_tokens(vocab, seed, 1 << 20)
        description = f"synthetic ({len(all_tokens):,} tokens, seed {seed})"
    else:
        path = data.get("path")
        if not path:
            raise DataError(f'data.source="{source}" needs data.path (a local file, relative to the config)')
        file = path if os.path.isabs(path) else os.path.join(base_dir, path)
        try:
            with open(file, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise DataError(f"cannot read data.path {file}: no such file") from None
        except OSError as e:
            raise DataError(f"cannot read data.path {file}: {e}") from None
        if source == "text":
            if vocab < 256:
                raise DataError(
                    f'data.source="text" uses byte-level tokens (256 ids) but model.vocab={vocab}; '
                    "set model.vocab to 256 or more"
                )
            all_tokens = torch.frombuffer(bytearray(raw), dtype=torch.uint8).to(torch.int64)
            description = f"text {path} ({len(raw):,} bytes, byte-level tokens)"
        else:
            if len(raw) % 2:
                raise DataError(
                    f"{file}: a nanoGPT token file holds uint16 values, but its size ({len(raw)} bytes) is odd"
                )
            all_tokens = torch.frombuffer(bytearray(raw), dtype=torch.int16).to(torch.int64) & 0xFFFF
            if len(all_tokens) and int(all_tokens.max()) >= vocab:
                i = int((all_tokens >= vocab).nonzero()[0])
                raise DataError(
                    f"{file}: token {int(all_tokens[i])} at position {i} (byte offset {2 * i}) is not below "
                    f"model.vocab={vocab}; is this file tokenized for this model?"
                )
            description = f"tokens {path} ({len(all_tokens):,} uint16 tokens)"
    need = seq_len + 1
    val_len = int(len(all_tokens) * float(data.get("valFraction", 0.1)))
    train_len = len(all_tokens) - val_len
    if train_len < need:
        raise DataError(
            f"{description}: {train_len} training tokens, fewer than one sequence of model.seqLen+1={need}; "
            "use more data or a shorter model.seqLen"
        )
    if need_val and val_len < need:
        raise DataError(
            f"{description}: the held-out split (data.valFraction={data.get('valFraction')}) has {val_len} tokens, "
            f"fewer than one sequence of {need}; raise data.valFraction, add data, or set train.evalEvery to 0"
        )
    return TokenStream(description, all_tokens[:train_len], all_tokens[train_len:], vocab)


class BatchSampler:
    """Random windows of a token stream addressed by (step, row), as the local engine's BatchSampler."""

    def __init__(self, stream: torch.Tensor, seq: int, seed: int, split: str) -> None:
        if len(stream) < seq + 1:
            raise DataError(f"the {split} split has {len(stream)} tokens, fewer than seq+1={seq + 1}")
        self.stream = stream
        self.seq = seq
        self.seed = seed
        self.split = split

    def offset(self, step: int, row: int) -> int:
        span = len(self.stream) - self.seq
        return math.floor(uniform_at(self.seed, 1 if self.split == "train" else 2, step, row) * span)

    def batch(self, step: int, first_row: int, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows [first_row, first_row + rows) of step `step`: tokens and targets, int64 [rows, seq]."""
        idx = torch.tensor([self.offset(step, first_row + r) for r in range(rows)], dtype=torch.int64)
        window = idx[:, None] + torch.arange(self.seq + 1, dtype=torch.int64)[None, :]
        w = self.stream[window]
        return w[:, :-1].contiguous(), w[:, 1:].contiguous()
