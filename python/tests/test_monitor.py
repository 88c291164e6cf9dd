"""scalelm.Monitor in a user's own DDP script under torchrun: over the rank channel, and into a run folder when
no ScaleLM is listening; every record is a valid protocol v1 message (common/protocol.ts, via node)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from engines import PYTHON_DIR, ChannelServer, check_messages, train_tiny_gpt2

SCRIPT = """
import os, torch, torch.distributed as dist, scalelm
from torch.nn.parallel import DistributedDataParallel as DDP
dist.init_process_group("gloo")
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.GELU(), torch.nn.Linear(64, 4))
ddp = DDP(model)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
monitor = scalelm.Monitor(model, opt, name="toy")
for step in range(12):
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(step * 10 + dist.get_rank()))
    loss = ddp(x).pow(2).mean()
    if os.environ.get("DIE_AT") == str(step + 1) and dist.get_rank() == 1:
        os._exit(3)  # dies in the middle of a step, after its forward
    loss.backward()
    opt.step()
    monitor.step(loss=loss, tokens=16)
    opt.zero_grad()
    if dist.get_rank() == 0:
        print("LOSS", step + 1, repr(float(loss)), flush=True)
monitor.close()
dist.barrier()  # no rank tears gloo down while a peer still uses it
dist.destroy_process_group()
"""
PARAMS = (16 * 64 + 64 + 64 * 4 + 4) * 4


def run_script(tmp: Path, env: dict[str, str]) -> dict[int, float]:
    (tmp / "train.py").write_text(SCRIPT)
    e = {**os.environ, "PYTHONPATH": str(PYTHON_DIR), "OMP_NUM_THREADS": "1", **env}
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", "train.py"],
        cwd=tmp,
        env=e,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return {
        int(s): float(v) for _, s, v in (line.split() for line in out.stdout.splitlines() if line.startswith("LOSS"))
    }


def test_monitor_over_the_rank_channel(tmp_path: Path) -> None:
    server = ChannelServer(tmp_path, "cd" * 32)
    try:
        losses = run_script(tmp_path, server.env())
    finally:
        server.close()
    hellos = server.of("hello")
    assert sorted(h["rank"] for h in hellos) == [0, 1] and all(
        h["engine"] == "monitor" and h["world"] == 2 for h in hellos
    )
    msgs = [x["m"] for x in server.of("msg")]
    check_messages(msgs)
    steps = [m for m in msgs if m["type"] == "step"]
    assert [m["step"] for m in steps] == list(range(1, 13))
    assert all(abs(m["loss"] - losses[m["step"]]) < 1e-6 for m in steps)
    assert all(m["lr"] == 1e-3 for m in steps)
    # The toy's grad norm costs more than the Monitor's 0.2% budget of its ~1 ms step: computed on step 1 and as
    # the budget allows ("NaN" = not computed), and a log line says so once.
    norms = [m["gradNorm"] for m in steps]
    assert norms[0] > 0 and all(g == "NaN" or g > 0 for g in norms), norms
    said = [m for m in msgs if m["type"] == "log" and "grad_norm=" in m["message"]]
    assert len(said) == (1 if "NaN" in norms else 0), said
    mem = [m for m in msgs if m["type"] == "memory"]
    assert {m["rank"] for m in mem} == {0, 1}
    for m in mem:
        c = m["categories"]
        assert c["params"] == PARAMS and c["grads"] == PARAMS and c["optimizer"] == 2 * PARAMS
        assert c["activations"] > 0  # sampled on CPU by saved-tensor hooks
    assert {d["rank"] for d in server.of("done")} == {0, 1}
    for r in (0, 1):  # each step announced once, as it starts
        assert [p["step"] for p in server.of("progress") if p["rank"] == r] == list(range(1, 13))


def test_monitor_names_the_step_a_rank_died_in(tmp_path: Path) -> None:
    """docs/rank-channel.md: `progress` S goes as step S starts, so a rank that dies mid-step is named in it."""
    (tmp_path / "train.py").write_text(SCRIPT)
    server = ChannelServer(tmp_path, "ef" * 32)
    e = {**os.environ, "PYTHONPATH": str(PYTHON_DIR), "OMP_NUM_THREADS": "1", **server.env(), "DIE_AT": "5"}
    try:
        out = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", "train.py"],
            cwd=tmp_path,
            env=e,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        server.close()
    assert out.returncode != 0
    assert [p["step"] for p in server.of("progress") if p["rank"] == 1] == [1, 2, 3, 4, 5]
    assert max(m["m"]["step"] for m in server.of("msg") if m["rank"] == 1 and m["m"]["type"] == "memory") == 4


def test_monitor_writes_a_run_folder_without_scalelm(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_script(tmp_path, {"SCALELM_RUN_DIR": str(run)})
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    check_messages(lines)
    assert lines[0]["type"] == "hello" and lines[0]["world"] == 2 and lines[0]["name"] == "toy"
    assert [m["step"] for m in lines if m["type"] == "step"] == list(range(1, 13))


def test_transformers_trainer_callback(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate (not in the pinned .venv)")
    run = tmp_path / "run"
    model = train_tiny_gpt2(tmp_path, {"SCALELM_RUN_DIR": str(run)}, max_steps=3, n_positions=16)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    check_messages(lines)
    assert lines[0]["type"] == "hello" and lines[0]["config"]["huggingface"]["n_layer"] == 1
    steps = [m for m in lines if m["type"] == "step"]
    assert [m["step"] for m in steps] == [1, 2, 3] and all(m["loss"] > 0 for m in steps)
    mem = [m for m in lines if m["type"] == "memory"]
    assert mem and all(m["categories"]["params"] == 4 * sum(p.numel() for p in model.parameters()) for m in mem)


def test_grad_norm_is_the_global_l2_norm(tmp_path: Path) -> None:
    """Without a grad_norm from the caller, the Monitor reports the L2 norm over every gradient."""
    import math

    import torch

    import scalelm

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = scalelm.Monitor(model, opt, run_dir=str(tmp_path))
    loss = model(torch.randn(4, 8)).pow(2).mean()
    loss.backward()
    expected = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters() if p.grad is not None))
    monitor.step(loss=loss, tokens=4)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    got = next(m for m in lines if m["type"] == "step")["gradNorm"]
    assert expected > 0 and abs(got - expected) <= 1e-6 * expected
