"""What `scalelm.Monitor` costs a user's training step (issue 15 item 1: "Overhead under 1% of step time").

Two identical copies of a small causal transformer LM (PyTorch's own layers, byte vocabulary) train side by
side on CPU in one process: one with a `Monitor(model, optimizer)` and `monitor.step(loss=…, tokens=…)` after
every optimizer step (writing its records to a run folder, as with no ScaleLM listening), one without. They run
in alternating blocks of whole steps (by default one step each, many pairs; ABBA order, so drift in the
machine's load falls on both); a block's cost is its process CPU time (less disturbed by a busy shared machine
than wall time). Two figures:

- paired: the median over pairs of (monitored - plain) / plain and the ratio of the totals, each with its 95%
  bootstrap interval, and the inter-quartile range of the pairs (the resolution this machine allows);
- direct: the Monitor's own work timed alone (monitor.step() in the monitored blocks, and the saved-tensor
  hooks' extra on a hooked forward+backward, ABBA against plain ones, times the share of steps its sampling
  policy hooked) against the plain step: far below the paired figure's noise.

Prints a table and ends with one `RESULT {json}` line (with the load average: other processes on the machine).

    .venv/bin/python bench/monitor_overhead.py [--reps 200] [--block 1] [--threads 1] [--clip] [--layers 4]

A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from overhead_stats import describe, load, summary
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
    ap.add_argument("--reps", type=int, default=200, help="pairs of (plain block, monitored block)")
    ap.add_argument("--block", type=int, default=1, help="steps per timed block")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on a shared machine)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument(
        "--clip",
        action="store_true",
        help="both loops clip gradients (clip_grad_norm_, max 1.0) and the monitored one passes that norm as "
        "grad_norm, as most LLM loops can: the Monitor then makes no pass of its own over the gradients",
    )
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    load_before = load()
    torch.manual_seed(0)
    plain = TinyLM(a.layers, a.hidden, a.seq)
    monitored = TinyLM(a.layers, a.hidden, a.seq)
    monitored.load_state_dict(plain.state_dict())
    opts = {m: torch.optim.AdamW(m.parameters(), lr=1e-4) for m in (plain, monitored)}
    run_dir = tempfile.mkdtemp(prefix="scalelm-monitor-bench-")
    for k in ("SCALELM_CHANNEL", "SCALELM_CHANNEL_TOKEN"):
        os.environ.pop(k, None)
    import scalelm
    from scalelm.memory import SavedTensorCounter

    monitor = scalelm.Monitor(monitored, opts[monitored], name="bench", run_dir=run_dir)
    data = torch.randint(0, 256, (a.batch, a.seq + 1), generator=torch.Generator().manual_seed(1))
    x, y = data[:, :-1], data[:, 1:]
    tokens = a.batch * a.seq
    in_monitor = [0.0]  # process CPU seconds inside monitor.step()

    def step(model: nn.Module) -> None:
        opt = opts[model]
        loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        norm = float(nn.utils.clip_grad_norm_(model.parameters(), 1.0)) if a.clip else None
        opt.step()
        if model is monitored:
            t0 = time.process_time()
            monitor.step(loss=loss, tokens=tokens, grad_norm=norm)
            in_monitor[0] += time.process_time() - t0
        opt.zero_grad(set_to_none=True)

    def block(model: nn.Module) -> float:
        t0 = time.process_time()
        for _ in range(a.block):
            step(model)
        return (time.process_time() - t0) / a.block * 1000

    for _ in range(2):  # warm-up: allocator, kernels, the Monitor's first (shape) report and its first samples
        for m in (plain, monitored):
            block(m)
    warm_sampled = monitor.sampling.sampled
    in_monitor[0] = 0.0
    plain_ms, mon_ms = [], []
    for r in range(a.reps):
        order = (plain, monitored) if r % 4 in (0, 3) else (monitored, plain)
        got = {id(m): block(m) for m in order}
        p, q = got[id(plain)], got[id(monitored)]
        plain_ms.append(p)
        mon_ms.append(q)
        if r < 3 or r == a.reps - 1:
            print(f"pair {r}: plain {p:8.2f} ms/step  monitored {q:8.2f} ms/step  overhead {100 * (q - p) / p:+6.2f}%")
    timed_steps = a.reps * a.block
    sampled = monitor.sampling.sampled - warm_sampled

    # The hooks alone: a forward+backward with the saved-tensor hooks against one without (ABBA), on the plain
    # copy (so the Monitor's own forward hooks do not run).
    hooked: dict[bool, list[float]] = {True: [], False: []}
    for i in range(40):
        on = i % 4 in (0, 3)
        t0 = time.process_time()
        with SavedTensorCounter().counting() if on else contextlib.nullcontext():
            out = plain(x)
        nn.functional.cross_entropy(out.flatten(0, 1), y.flatten()).backward()
        hooked[on].append(time.process_time() - t0)
        opts[plain].zero_grad(set_to_none=True)
    hook_ms = max(0.0, (statistics.median(hooked[True]) - statistics.median(hooked[False])) * 1000)
    step_call_ms = in_monitor[0] / timed_steps * 1000
    plain_step = statistics.median(plain_ms)
    direct_pct = (step_call_ms + hook_ms * sampled / timed_steps) / plain_step * 100

    records = len(Path(run_dir, "metrics.jsonl").read_text().splitlines())
    paired = summary(plain_ms, mon_ms)
    load_after = load()
    print(
        f"torch {torch.__version__}, {a.threads} thread(s), process CPU time; {a.reps} pairs x {a.block} steps"
        f"{' (both clip; grad_norm passed)' if a.clip else ''}; "
        f"load average {load_before} before, {load_after} after"
    )
    print(f"median step: plain {plain_step:.2f} ms, monitored {statistics.median(mon_ms):.2f} ms")
    print(describe("paired overhead", paired))
    print(
        f"direct: monitor.step() {step_call_ms:.3f} ms per step; hooks +{hook_ms:.3f} ms on {sampled} of "
        f"{timed_steps} steps (sampling policy, budget {monitor.sampling.budget:.2%}) = {direct_pct:.3f}% of the step"
    )
    print(f"the monitored copy wrote {records} records to {run_dir}/metrics.jsonl")
    result = {
        "bench": "monitor_overhead",
        "threads": a.threads,
        "clip": a.clip,
        "plainMsPerStep": round(plain_step, 3),
        "monitoredMsPerStep": round(statistics.median(mon_ms), 3),
        "overheadPct": paired["median_pct"],
        "overheadPctCi95": paired["ci95_pct"],
        "overheadPctIqr": paired["iqr_pct"],
        "totalPct": paired["total_pct"],
        "totalPctCi95": paired["total_ci95_pct"],
        "pairs": paired["pairs"],
        "directPct": round(direct_pct, 4),
        "stepCallMs": round(step_call_ms, 4),
        "hookMs": round(hook_ms, 3),
        "sampledSteps": sampled,
        "timedSteps": timed_steps,
        "budgetPct": 1.0,
        "withinBudget": paired["ci95_pct"][1] < 1.0,
        "load": {"before": load_before, "after": load_after},
        "records": records,
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
