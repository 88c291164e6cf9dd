"""What the torch engine's per-rank memory measurement costs (issue 14 item 6: "under 1% of step time on average").

One rank (a world of one: gloo on CPU, NCCL on CUDA) runs the engine's own step loop (scalelm.train.Rank:
train_step, plus the device's used-memory read that run() makes on CUDA) on the resolved config of
examples/tiny-parallel.scalelm.json (a small GPT-2; change it with --set), in blocks of steps (by default one
step each, many pairs) alternating the measurement as shipped (on) with it switched off (Rank.measure_memory, the
SCALELM_MEMORY_SAMPLING=0 switch), in ABBA order so drift in the machine's load falls on both. The costly parts
are sampled (scalelm.memory.SamplingPolicy: saved-tensor hooks on CPU, nvidia-smi on CUDA, on the steps whose
measured cost the 0.25% budget allows), so a block's cost is its mean step time, not its median. Two figures:

- paired: the median over pairs of (on - off) / off of the block means and the ratio of the totals, each with
  its 95% bootstrap interval, and the inter-quartile range of the pairs (the resolution this machine allows);
- direct: the measurement's own work timed alone (categories() every step, timed inside the step, plus the
  hooks' extra on a hooked forward+backward, ABBA against plain ones, times the share of steps the policy
  hooked) against the step.

Timed from outside train_step (its own stepMs leaves the per-category sums out); on CPU in process CPU time,
which a busy shared machine disturbs far less than wall time (--clock wall to see both). Prints a table and
ends with one `RESULT {json}` line (with the load average: other processes on the machine).

    node scripts/build.mjs   # the resolved config comes from the local engine's CLI (dist/cli.js)
    .venv/bin/python bench/torch_overhead.py [--device cpu|cuda|auto] [--reps 300] [--block 1] [--set k=v]...

A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tiny-parallel.scalelm.json"
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "bench"))

from overhead_stats import describe, load, summary  # noqa: E402


def resolved_config(sets: list[str]) -> dict[str, Any]:
    """The run config as the CLI resolves it (presets, defaults): one local-engine step, then its config.json."""
    cli = ROOT / "dist" / "cli.js"
    if not cli.exists():
        sys.exit("torch_overhead: build first (node scripts/build.mjs): dist/cli.js does not exist")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["node", str(cli), "train", str(EXAMPLE), "--run-dir", f"{tmp}/run", "--steps", "1"]
        for s in ["train.checkpointEvery=0", "train.evalEvery=0", *sets]:
            cmd += ["--set", s]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            sys.exit(f"torch_overhead: the CLI could not resolve the config:\n{out.stderr[-2000:]}")
        return json.loads((Path(tmp) / "run" / "config.json").read_text())  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--reps", type=int, default=300, help="pairs of (on block, off block)")
    ap.add_argument("--block", type=int, default=1, help="steps per block")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on a shared machine)")
    ap.add_argument(
        "--clock", default="auto", choices=["auto", "cpu", "wall"], help="auto: CPU time on cpu, wall on cuda"
    )
    ap.add_argument("--set", action="append", default=[], help="config override path=value, as `scalelm train --set`")
    a = ap.parse_args()

    import torch
    import torch.distributed as dist

    from scalelm import train as engine
    from scalelm.memory import SavedTensorCounter, categories

    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    load_before = load()
    torch.set_num_threads(a.threads)
    config = resolved_config(a.set)
    config["parallel"].update(dp=1, tp=1, zero=0)
    config["train"]["steps"] = 10**9  # the loop is driven here; the schedule only sets the learning rate
    os.environ.setdefault("LOCAL_RANK", "0")
    if device == "cuda":
        torch.cuda.set_device(0)
    dist.init_process_group("nccl" if device == "cuda" else "gloo", store=dist.HashStore(), rank=0, world_size=1)  # type: ignore[attr-defined]
    try:
        r = engine.Rank({"config": config, "baseDir": str(EXAMPLE.parent), "device": device}, None)

        # On CPU the process's CPU time (one torch thread, a world of one: no communication to wait for): the
        # work done, not the other processes' share of a busy machine. On CUDA wall time (the GPU's work).
        cpu_clock = (device == "cpu" and a.clock == "auto") or a.clock == "cpu"
        clock = time.process_time if cpu_clock else time.perf_counter

        # categories() timed where the engine calls it (in the step, caches as the step leaves them): the
        # engine module's name for it is wrapped, for this benchmark only.
        cat: list[float] = []

        def timed_categories(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            out = categories(*args, **kwargs)
            cat.append(clock() - t0)
            return out

        engine.categories = timed_categories  # type: ignore[attr-defined]

        def block(on: bool) -> list[float]:
            r.measure_memory = on
            used: int | None = None
            times = []
            for _ in range(a.block):
                t0 = clock()
                out = r.train_step()
                if r.device.type == "cuda":
                    used = r.device_used(out["step"], used)  # what run() adds per step on CUDA
                times.append(clock() - t0)
            return times

        for _ in range(2):  # warm-up: allocator, kernels, the first sampled steps
            block(True)
            block(False)
        policy = r.hook_sampling if r.device.type != "cuda" else r.device_sampling
        warm_sampled = policy.sampled
        cat.clear()
        means: dict[bool, list[float]] = {True: [], False: []}
        steps: dict[bool, list[float]] = {True: [], False: []}
        for i in range(a.reps):
            for on in (True, False) if i % 4 in (0, 3) else (False, True):
                ts = block(on)
                means[on].append(statistics.fmean(ts))
                steps[on].extend(ts)
        sampled = policy.sampled - warm_sampled
        timed_steps = a.reps * a.block
        # The measurement's own work, timed alone (resolves what the paired blocks cannot on a noisy machine):
        # categories() every step (timed above, in the step), and the saved-tensor hooks on one micro-batch's
        # forward+backward (CPU) on the steps the policy sampled.
        hooked: dict[bool, list[float]] = {True: [], False: []}
        tokens, targets = r._micro(r.step + 1, 0)
        for i in range(40):
            on = i % 4 in (0, 3)  # ABBA order: neither mode always runs right after the other
            counter = SavedTensorCounter()
            t0 = clock()
            with counter.counting() if on else contextlib.nullcontext():
                loss = r.wrapped(tokens, targets)
            loss.backward()
            hooked[on].append(clock() - t0)
            r.model.zero_grad(set_to_none=True)
        cat_ms = statistics.fmean(cat) * 1000
        hook_raw = (statistics.median(hooked[True]) - statistics.median(hooked[False])) * 1000
        hook_ms = max(0.0, hook_raw)  # below the forward's own noise when negative
        sampled_hooks = device == "cpu"
        direct_ms = cat_ms + (hook_ms * sampled / timed_steps if sampled_hooks else 0.0)
        on_ms, off_ms = (statistics.median(means[k]) * 1000 for k in (True, False))
        # Paired per repetition (its on and off blocks ran back to back): the spread shows the machine's noise.
        paired = summary(means[False], means[True])
        load_after = load()
        print(
            f"torch {torch.__version__} on {device} ({platform.machine()}, {a.threads} thread(s)); "
            f"clock: {'process CPU time' if cpu_clock else 'wall'}; load average {load_before} before, "
            f"{load_after} after"
        )
        m = config["model"]
        print(
            f"model: {m.get('layers')}L h{m.get('hidden')} seq {m.get('seqLen')} vocab {m.get('vocab')}; "
            f"micro-batch {config['train']['microBatch']} x {r.accumulation}; {a.reps} pairs x {a.block} steps"
        )
        print(f"{'memory measurement':<20}{'mean step ms':>14}{'median step ms':>16}{'min block ms':>14}")
        for k, name in ((True, "on (as shipped)"), (False, "off")):
            print(
                f"{name:<20}{statistics.median(means[k]) * 1000:>14.3f}{statistics.median(steps[k]) * 1000:>16.3f}"
                f"{min(means[k]) * 1000:>14.3f}"
            )
        print(describe("paired overhead", paired))
        print(
            f"direct: categories() {cat_ms:.3f} ms per step"
            + (f", hooks {hook_raw:+.3f} ms on {sampled} of {timed_steps} steps" if sampled_hooks else "")
            + f" = {direct_ms:.3f} ms per step on average = {direct_ms / off_ms * 100:.3f}% of the step"
            + ("" if sampled_hooks else f" (+ nvidia-smi on {sampled} of {timed_steps} steps, in the blocks above)")
        )
        result = {
            "bench": "torch_overhead",
            "direct_pct": round(direct_ms / off_ms * 100, 4),
            "overhead_pct": paired["median_pct"],
            "overhead_pct_ci95": paired["ci95_pct"],
            "overhead_pct_iqr": paired["iqr_pct"],
            "total_pct": paired["total_pct"],
            "total_pct_ci95": paired["total_ci95_pct"],
            "pairs": paired["pairs"],
            "step_ms_on": round(on_ms, 3),
            "step_ms_off": round(off_ms, 3),
            "steps": timed_steps,
            "sampled_steps": sampled,
            "clock": "cpu" if cpu_clock else "wall",
            "threads": a.threads,
            "load": {"before": load_before, "after": load_after},
            "device": device if device == "cpu" else torch.cuda.get_device_name(0),
            "torch": torch.__version__,
        }
        print("RESULT " + json.dumps(result), flush=True)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
