#!/usr/bin/env python3
"""PyTorch peer for bench/train.ts: the same GPT-2 (the test's reference model), the same batch shape,
AdamW + clipping, at a given thread count. Prints one JSON line: median step ms and the sgemm rate of this
PyTorch on this machine at the same thread count. The caller sets OMP_NUM_THREADS, OMP_WAIT_POLICY and
OPENBLAS_CORETYPE so the peer runs at its best."""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "runtime", "train"))
from gpt2_reference import GPT2  # noqa: E402


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main():
    a = json.loads(sys.argv[1])
    torch.set_num_threads(a["threads"])
    torch.manual_seed(0)
    L, h, heads, V, s, B = a["layers"], a["hidden"], a["heads"], a["vocab"], a["seq"], a["batch"]
    model = GPT2(L, h, heads, V, s, 4 * h, 1e-5)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.02)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], lr=3e-4, betas=(0.9, 0.95))
    times = []
    for i in range(a["warmup"] + a["steps"]):
        idx = torch.randint(0, V, (B, s))
        tgt = torch.randint(0, V, (B, s))
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(idx, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()
        if i >= a["warmup"]:
            times.append((time.perf_counter() - t0) * 1000)
    n = 1024
    x = torch.randn(n, n)
    y = torch.randn(n, n)
    for _ in range(3):
        x @ y
    mm = []
    for _ in range(10):
        t0 = time.perf_counter()
        x @ y
        mm.append(time.perf_counter() - t0)
    print(json.dumps({"stepMs": median(times), "stepsMs": times, "matmulGflops": 2 * n**3 / median(mm) / 1e9, "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
