"""The loss's memory peak, measured in PyTorch against the planner's `scalelm` estimate of it.

A training loop in the torchtitan / Megatron style computes `cross_entropy(logits.float(), labels)` on 16-bit
logits and drops the logits before `backward()`. Every storage an op creates is tracked (a dispatch mode, a
finalizer per storage) and the peak of live bytes is read; two vocabulary sizes isolate the bytes per logit
element. The planner's activations for the same two vocabularies (`scalelm estimate --json` on a config.json)
must grow by the same bytes per logit."""

from __future__ import annotations

import json
import subprocess
import tempfile
import weakref
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from engines import REPO, need_cli
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

TOKENS, HIDDEN = 256, 64
VOCABS = (2048, 4096)  # multiples of 128: no vocabulary padding in the planner


class LiveBytes(TorchDispatchMode):
    """Bytes of the storages created inside the mode that are still alive, and their peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.seen: set[int] = set()

    def _free(self, key: int, n: int) -> None:
        self.seen.discard(key)
        self.live -= n

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        # A view (t(), detach) shares an input's storage: nothing new is allocated.
        inputs = {
            a.untyped_storage().data_ptr() for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)
        }
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.seen and key not in inputs:
                    self.seen.add(key)
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._free, key, storage.nbytes())
        return out


def measured_peak(vocab: int) -> int:
    torch.manual_seed(0)
    x = torch.randn(TOKENS, HIDDEN, dtype=torch.bfloat16, requires_grad=True)
    # The output weight's gradient (vocab by hidden) is a gradient, not an activation: not asked for here.
    w = torch.randn(vocab, HIDDEN, dtype=torch.bfloat16)
    labels = torch.randint(0, vocab, (TOKENS,))
    with LiveBytes() as mode:
        logits = x @ w.t()
        loss = F.cross_entropy(logits.float(), labels)
        del logits  # as torchtitan's and Megatron's loops do before backward
        loss.backward()
    return mode.peak


def planned_activations(vocab: int, tmp: Path) -> int:
    config = json.loads((REPO / "examples" / "hf" / "llama-3-8b.config.json").read_text())
    config.update(vocab_size=vocab, num_hidden_layers=1, hidden_size=HIDDEN, intermediate_size=4 * HIDDEN)
    config.update(num_attention_heads=4, num_key_value_heads=4, head_dim=HIDDEN // 4, tie_word_embeddings=False)
    path = tmp / f"v{vocab}" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(config))
    cmd = [
        "node", str(need_cli()), "estimate", str(path), "--json", "--gpus", "1", "--seq-len", str(TOKENS),
        "--micro-batch", "1", "--global-batch", "1", "--precision", "bf16-mixed", "--flash-attention",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    return int(json.loads(out.stdout)["perDevice"]["activations"])


def test_the_planner_counts_the_loss_peak_per_logit_that_pytorch_reaches() -> None:
    d_logits = TOKENS * (VOCABS[1] - VOCABS[0])
    measured = (measured_peak(VOCABS[1]) - measured_peak(VOCABS[0])) / d_logits
    with tempfile.TemporaryDirectory() as tmp:
        planned = (planned_activations(VOCABS[1], Path(tmp)) - planned_activations(VOCABS[0], Path(tmp))) / d_logits
    print(f"bytes per logit element at the loss's peak: measured {measured:.3f}, planned {planned:.3f}")
    assert abs(measured - 12) < 0.05, measured  # three fp32 tensors: log-softmax output, its gradient, the input's
    assert abs(planned - measured) < 0.05, (planned, measured)
