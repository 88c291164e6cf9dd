"""What `scalelm.Monitor` costs a user's training step (issue 15 item 1: "Overhead under 1% of step time").

Two identical copies of a small causal transformer LM (PyTorch's own layers, byte vocabulary) train side by
side on CPU in one process: one with a `Monitor(model, optimizer)` and `monitor.step(loss=…, tokens=…)` after
every optimizer step (writing its records to a run folder, as with no ScaleLM listening), one without. They run
in alternating blocks of whole steps, the order swapped each repetition so drift in the machine's load falls
on both; a block's cost is its process CPU time (less disturbed by a busy shared machine than wall time). The
figure is the median over repetitions of (monitored - plain) / plain. The peer is the same loop without the
Monitor, run at its best (same threads, same data, warmed up). Prints a table and ends with one
`RESULT {json}` line.

    .venv/bin/python bench/monitor_overhead.py [--reps 7] [--block 10] [--layers 4] [--hidden 256]

A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

import torch
from torch import nn


class TinyLM(nn.Module):
    def __init__(self, layers: int, hidden: int, seq: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, hidden)
        self.pos = nn.Parameter(torch.zeros(seq, hidden))
        block = nn.TransformerEncoderLayer(
            hidden, hidden // 64, 4 * hidden, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.head = nn.Linear(hidden, 256)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(seq), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.pos[: x.shape[1]]
        return self.head(self.blocks(h, mask=self.mask, is_causal=True))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--block", type=int, default=10, help="steps per timed block")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    a = ap.parse_args()
    torch.manual_seed(0)
    plain = TinyLM(a.layers, a.hidden, a.seq)
    monitored = TinyLM(a.layers, a.hidden, a.seq)
    monitored.load_state_dict(plain.state_dict())
    opts = {m: torch.optim.AdamW(m.parameters(), lr=1e-4) for m in (plain, monitored)}
    run_dir = tempfile.mkdtemp(prefix="scalelm-monitor-bench-")
    for k in ("SCALELM_CHANNEL", "SCALELM_CHANNEL_TOKEN"):
        os.environ.pop(k, None)
    import scalelm

    monitor = scalelm.Monitor(monitored, opts[monitored], name="bench", run_dir=run_dir)
    data = torch.randint(0, 256, (a.batch, a.seq + 1), generator=torch.Generator().manual_seed(1))
    x, y = data[:, :-1], data[:, 1:]
    tokens = a.batch * a.seq

    def step(model: nn.Module) -> None:
        opt = opts[model]
        loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
        if model is monitored:
            monitor.step(loss=loss, tokens=tokens)
        opt.zero_grad(set_to_none=True)

    def block(model: nn.Module) -> float:
        t0 = time.process_time()
        for _ in range(a.block):
            step(model)
        return (time.process_time() - t0) / a.block * 1000

    for m in (plain, monitored):  # warm-up: allocator, kernels, the Monitor's first (shape) report
        block(m)
    ratios, plain_ms, mon_ms = [], [], []
    for r in range(a.reps):
        order = (plain, monitored) if r % 2 == 0 else (monitored, plain)
        got = {id(m): block(m) for m in order}
        p, q = got[id(plain)], got[id(monitored)]
        plain_ms.append(p)
        mon_ms.append(q)
        ratios.append((q - p) / p)
        print(f"rep {r}: plain {p:8.2f} ms/step  monitored {q:8.2f} ms/step  overhead {100 * (q - p) / p:+6.2f}%")
    records = len(Path(run_dir, "metrics.jsonl").read_text().splitlines())
    med = statistics.median(ratios)
    print(
        f"median: plain {statistics.median(plain_ms):.2f} ms/step, monitored {statistics.median(mon_ms):.2f} ms/step, overhead {100 * med:+.2f}% (budget 1%)"
    )
    print(f"the monitored copy wrote {records} records to {run_dir}/metrics.jsonl")
    result = {
        "bench": "monitor_overhead",
        "threads": torch.get_num_threads(),
        "plainMsPerStep": round(statistics.median(plain_ms), 3),
        "monitoredMsPerStep": round(statistics.median(mon_ms), 3),
        "overheadRatio": round(med, 5),
        "budgetRatio": 0.01,
        "withinBudget": med < 0.01,
        "records": records,
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
