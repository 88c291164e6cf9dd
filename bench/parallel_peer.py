#!/usr/bin/env python3
"""PyTorch peer for bench/parallel.ts: DistributedDataParallel over gloo on the CPU, the same GPT-2 (the test's
reference model), the same global batch split over `world` processes, AdamW + clipping, `threads` threads per
process. Prints one JSON line: rank 0's median step ms (every step starts at a barrier). The caller sets
OMP_WAIT_POLICY and OPENBLAS_CORETYPE so the peer runs at its best."""
import json
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "runtime", "train"))
from gpt2_reference import GPT2  # noqa: E402


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def run(rank, a, port, out):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(a["threads"])
    world = a["world"]
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    L, h, heads, V, s = a["layers"], a["hidden"], a["heads"], a["vocab"], a["seq"]
    model = GPT2(L, h, heads, V, s, 4 * h, 1e-5)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.02)
    net = DistributedDataParallel(model, bucket_cap_mb=25) if world > 1 else model
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], lr=3e-4, betas=(0.9, 0.95))
    B = a["batch"] // world
    g = torch.Generator().manual_seed(rank)
    times = []
    for i in range(a["warmup"] + a["steps"]):
        idx = torch.randint(0, V, (B, s), generator=g)
        tgt = torch.randint(0, V, (B, s), generator=g)
        dist.barrier()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = net(idx, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()
        if i >= a["warmup"]:
            times.append((time.perf_counter() - t0) * 1000)
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"stepMs": median(times), "stepsMs": times, "torch": torch.__version__, "threads": torch.get_num_threads(), "world": world}, f)
    dist.destroy_process_group()


def main():
    a = json.loads(sys.argv[1])
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"scalelm-ddp-peer-{os.getpid()}.json")
    mp.spawn(run, args=(a, port, out), nprocs=a["world"], join=True)
    with open(out) as f:
        print(f.read())
    os.unlink(out)


if __name__ == "__main__":
    main()
