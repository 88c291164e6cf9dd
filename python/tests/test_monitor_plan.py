"""What the Monitor tells the planner (scalelm/shape.py): the HuggingFace shape and the detected layout in rank 0's
`shape` line, accepted by the coordinator's own parser; the run's length from the HF Trainer and Lightning;
the capacity and a real per-step growth that the out-of-memory forecast reads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from engines import PYTHON_DIR, REPO, ChannelServer, check_messages, train_tiny_gpt2

FIXTURES = REPO / "test" / "fixtures" / "monitor"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]


def parse_rank_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The coordinator's parser (runtime/parallel/channel.ts parseRankLine) on each line: what it keeps."""
    channel = REPO / "out" / "runtime" / "parallel" / "channel.js"
    if not channel.exists() or not shutil.which("node"):
        pytest.skip("runtime/ is not compiled (npx tsc -p .)")
    code = (
        "const {parseRankLine}=require(process.argv[1]);const ls=JSON.parse(require('fs').readFileSync(0,'utf8'));"
        "console.log(JSON.stringify(ls.map((l)=>parseRankLine(JSON.stringify(l)))))"
    )
    out = subprocess.run(
        ["node", "-e", code, str(channel)], input=json.dumps(lines), capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    results: list[dict[str, Any]] = json.loads(out.stdout)
    assert all(r["ok"] for r in results), results
    return [r["value"] for r in results]


def test_shape_line_names_the_hf_model_and_the_ddp_layout(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    server = ChannelServer(tmp_path, "ef" * 32)
    env = {**os.environ, **server.env(), "PYTHONPATH": str(PYTHON_DIR), "OMP_NUM_THREADS": "1"}
    env.update(STEPS="3", MICRO="2", SEQ="16", N_POS="64")
    try:
        out = subprocess.run(
            [*TORCHRUN, "2", str(FIXTURES / "hf_ddp.py")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        server.close()
    assert out.returncode == 0, out.stderr[-3000:]
    shapes = server.of("shape")
    assert len(shapes) == 1 and shapes[0]["rank"] == 0
    (kept,) = parse_rank_lines(shapes)
    model = kept["model"]
    assert model["model_type"] == "gpt2"
    assert (model["n_layer"], model["n_embd"], model["n_head"], model["vocab_size"], model["n_positions"]) == (
        2,
        32,
        2,
        96,
        64,
    )
    assert kept["layout"] == {
        "world": 2,
        "strategy": "ddp",
        "zero": 0,
        "tp": 1,
        "microBatch": 2,
        "seqLen": 16,  # from the first forward's input_ids, not the model's 64 positions
        "precision": "fp32",
        "optimizer": "adamw",
        "attention": "eager",
        "paramDtype": "fp32",
    }
    assert kept["totalSteps"] == 3
    # Sent on rank 0's first step, ahead of its step-1 records.
    rank0 = [x for x in server.lines if x["rank"] == 0 and x["k"] in ("shape", "msg")]
    assert rank0[0]["k"] == "shape"


def test_transformers_trainer_reports_its_length_and_batch(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    run = tmp_path / "run"
    train_tiny_gpt2(tmp_path, {"SCALELM_RUN_DIR": str(run)}, max_steps=3, accum=2)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    check_messages(lines)
    report = lines[0]["config"]["monitor"]
    assert report["totalSteps"] == 3 and report["model"]["n_positions"] == 32
    layout = report["layout"]
    assert (layout["microBatch"], layout["seqLen"], layout["gradAccum"], layout["world"]) == (4, 16, 2, 1)
    assert [m["step"] for m in lines if m["type"] == "step"] == [1, 2, 3]


def test_transformers_callback_announces_every_step_between_logs(tmp_path: Path) -> None:
    """The Trainer reports only at logging steps; each step's `progress` still goes as it starts."""
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    server = ChannelServer(tmp_path, "ef" * 32)
    try:
        train_tiny_gpt2(tmp_path, server.env(), max_steps=5, accum=2, logging_steps=2)
    finally:
        server.close()
    assert [p["step"] for p in server.of("progress")] == [1, 2, 3, 4, 5]
    assert [x["m"]["step"] for x in server.of("msg") if x["m"]["type"] == "step"] == [2, 4]


def test_lightning_callback_reports_every_optimizer_step(tmp_path: Path) -> None:
    lightning = pytest.importorskip("lightning.pytorch")
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from scalelm.integrations import lightning_callback

    class Tiny(lightning.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.GELU(), torch.nn.Linear(32, 1))

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss: torch.Tensor = torch.nn.functional.mse_loss(self.net(x), y)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 8, generator=g), torch.randn(64, 1, generator=g))
    run = tmp_path / "run"
    os.environ["SCALELM_RUN_DIR"] = str(run)
    try:
        trainer = lightning.Trainer(
            max_steps=5,
            accumulate_grad_batches=2,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[lightning_callback("tiny")],
            default_root_dir=str(tmp_path),
        )
        trainer.fit(Tiny(), DataLoader(data, batch_size=4))
    finally:
        del os.environ["SCALELM_RUN_DIR"]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    check_messages(lines)
    assert lines[0]["type"] == "hello" and lines[0]["name"] == "tiny"
    report = lines[0]["config"]["monitor"]
    assert report["totalSteps"] == 5
    assert report["layout"]["gradAccum"] == 2 and report["layout"]["microBatch"] == 4
    steps = [m for m in lines if m["type"] == "step"]
    # Ten batches, five optimizer steps: accumulation batches are not reported.
    assert [m["step"] for m in steps] == [1, 2, 3, 4, 5]
    assert all(m["loss"] > 0 and m["lr"] == 1e-3 for m in steps)
    params = 4 * (8 * 32 + 32 + 32 + 1)
    mem = [m for m in lines if m["type"] == "memory"]
    assert len(mem) == 5 and all(m["categories"]["params"] == params for m in mem)
    assert all(m["categories"]["optimizer"] == 2 * params for m in mem)
    assert mem[0]["categories"]["activations"] > 0  # counted between the batch start and the backward


def test_the_monitor_sees_a_growing_buffer_against_the_given_capacity(tmp_path: Path) -> None:
    """What the forecast reads on CPU: a buffer kept across steps grows the counted memory step by step."""
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR), "OMP_NUM_THREADS": "1", "SCALELM_RUN_DIR": str(run)}
    env.update(STEPS="6", GROW_RANK="0", GROW_STEPS="4", GROW_BYTES=str(1 << 16), CAPACITY=str(1 << 24))
    out = subprocess.run(
        [*TORCHRUN, "1", str(FIXTURES / "growing.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    mem = [m for m in lines if m["type"] == "memory"]
    assert [m["categories"]["buffers"] for m in mem] == [(1 << 16) * min(s, 4) for s in range(1, 7)]
    assert all(m["capacity"] == 1 << 24 for m in mem)
    assert [m["stepPeak"] - mem[0]["stepPeak"] for m in mem] == [(1 << 16) * (min(s, 4) - 1) for s in range(1, 7)]
    assert lines[0]["config"]["monitor"]["totalSteps"] == 6


def test_layout_detection_of_torch_wrappers(tmp_path: Path) -> None:
    """DDP, FSDP2's fully_shard, ZeroRedundancyOptimizer and a "tp" DTensor mesh, as the shape line reports them.
    (FSDP1 needs an accelerator, DeepSpeed's engine a launcher: they are read by duck typing, untested here.)"""
    env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR), "OMP_NUM_THREADS": "1"}
    cmd = [*TORCHRUN, "2", str(FIXTURES / "detect.py")]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("DETECTED ")]
    seen = json.loads(line.split(" ", 1)[1])
    fp32 = {"world": 2, "paramDtype": "fp32"}
    assert seen["ddp"] == {**fp32, "strategy": "ddp", "zero": 0, "tp": 1}
    assert seen["fsdp2"] == {**fp32, "strategy": "fsdp2", "zero": 3, "tp": 1, "optimizer": "adamw"}
    assert seen["zero1"] == {**fp32, "strategy": "ddp", "zero": 1, "tp": 1, "optimizer": "adamw"}
    assert seen["tp"] == {**fp32, "strategy": "dtensor", "tp": 2, "optimizer": "sgd", "momentum": 0.9}
