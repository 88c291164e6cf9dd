"""Whole torch-engine runs under torchrun: the rank channel (hello with the token, messages, control), Stop, a
rank killed with SIGKILL, refusals, and resuming in the same layout, another layout and across engines."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from engines import (
    EXAMPLE,
    PYTHON_DIR,
    SMALL,
    ChannelServer,
    check_messages,
    local_train,
    losses,
    max_rel,
    resolved_config,
    torch_train,
    with_layout,
)

TOKEN = "ab" * 32


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], list[float]]:
    """The local engine's 12 steps with a (single-device format) checkpoint at step 6."""
    run = tmp_path_factory.mktemp("local") / "run"
    steps = local_train(run, [*SMALL, "train.checkpointEvery=6"], 12)
    return run, resolved_config(run), [m["loss"] for m in steps]


def test_channel_messages_and_stop(reference: tuple[Path, dict[str, Any], list[float]], tmp_path: Path) -> None:
    _, config, local = reference
    config = with_layout(config, dp=2, tp=1, zero=3)

    def react(server: ChannelServer, line: dict[str, Any]) -> None:
        if line["k"] == "progress" and line["rank"] == 0 and line["step"] == 2:
            server.send(0, {"k": "control", "action": "checkpoint"})
        if line["k"] == "progress" and line["rank"] == 0 and line["step"] == 3:
            server.send(0, {"k": "control", "action": "stop"})

    server = ChannelServer(tmp_path, TOKEN, react)
    template = str(tmp_path / "checkpoints" / ".tmp-{step}-test")
    try:
        # As node 1 of a multi-node launch: the hello and memory messages name the machine (NodeRef).
        env = {**server.env(), "SCALELM_CHECKPOINT_TEMPLATE": template, "SCALELM_NODE_RANK": "1"}
        torch_train(tmp_path, config, env=env)
    finally:
        server.close()
    hellos = server.of("hello")
    assert sorted(h["rank"] for h in hellos) == [0, 1]
    assert all(h["token"] == TOKEN and h["world"] == 2 and h["engine"] == "torch" for h in hellos)
    assert all(h["nodeRank"] == 1 and h["node"] == socket.gethostname() for h in hellos)
    done = server.of("done")
    # The stop was asked as rank 0 announced step 3: every rank ends after the same step, 2 or 3 (whether the
    # request reached rank 0 before it read its controls for step 3), or later on a loaded machine.
    assert len(done) == 2 and all(d["reason"] == "stopped" for d in done) and len({d["step"] for d in done}) == 1
    stopped_at = done[0]["step"]
    assert 2 <= stopped_at < config["train"]["steps"]
    saved = server.of("saved")  # the requested checkpoint (after step 1 or 2), then the stop's
    steps = sorted({s["step"] for s in saved})
    assert steps[-1] == stopped_at and len(steps) in (1, 2) and 1 <= steps[0] <= stopped_at
    assert all(sorted(s["rank"] for s in saved if s["step"] == k) == [0, 1] for k in steps)
    folder = Path(template.replace("{step}", f"step-{stopped_at:06d}"))
    assert (folder / "model.safetensors").exists() and (folder / "optimizer.safetensors").exists()
    assert not (folder / "state.json").exists()  # the coordinator's to write
    msgs = [x["m"] for x in server.of("msg")]
    check_messages(msgs)  # every one a valid protocol v1 message (common/protocol.ts)
    assert any(m["type"] == "log" and "dp=2 tp=1 zero=3" in m["message"] for m in msgs)
    steps = [m for m in msgs if m["type"] == "step"]
    assert [m["step"] for m in steps] == list(range(1, stopped_at + 1))
    assert max_rel([m["loss"] for m in steps], local[:stopped_at]) < 1e-4
    mem = [m for m in msgs if m["type"] == "memory"]
    assert {m["rank"] for m in mem} == {0, 1}
    assert all(m["node"] == {"rank": 1, "host": socket.gethostname()} for m in mem)
    for m in mem:
        c = m["categories"]
        assert set(c) >= {"params", "grads", "optimizer", "activations", "buffers", "other"}
        assert c["params"] > 0 and c["optimizer"] == 2 * c["params"] and c["activations"] > 0
    comm = [m for m in msgs if m["type"] == "comm"]
    for rank in (0, 1):  # every rank's gauge, FSDP2's collectives timed (test_comm.py checks the sizes)
        last = {s["kind"]: s for s in [m for m in comm if m["rank"] == rank][-1]["collectives"]}
        assert {"all-reduce-world", "all-gather-dp", "reduce-scatter-dp"} <= set(last)
        assert all(last[k]["calls"] > 0 and last[k]["ms"] > 0 for k in ("all-gather-dp", "reduce-scatter-dp"))


def test_rank_killed_with_sigkill_fails_the_run(
    reference: tuple[Path, dict[str, Any], list[float]], tmp_path: Path
) -> None:
    _, config, _ = reference
    config = with_layout(config, dp=2, tp=1, zero=0)
    config["train"]["steps"] = 1000
    pids: dict[int, int] = {}

    def react(server: ChannelServer, line: dict[str, Any]) -> None:
        if line["k"] == "hello":
            pids[line["rank"]] = line["pid"]
        if line["k"] == "progress" and line["rank"] == 1 and line["step"] == 3:
            os.kill(pids[1], signal.SIGKILL)

    server = ChannelServer(tmp_path, TOKEN, react)
    t0 = time.monotonic()
    try:
        out, _ = torch_train(tmp_path, config, env=server.env(), check=False, timeout=240)
    finally:
        server.close()
    assert out.returncode != 0
    assert time.monotonic() - t0 < 200
    assert "SIGKILL" in out.stderr or "Signal 9" in out.stderr
    for pid in pids.values():  # nothing left behind
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not server.of("done")


def test_refusals_before_start(reference: tuple[Path, dict[str, Any], list[float]], tmp_path: Path) -> None:
    _, config, _ = reference
    bad = with_layout(config, dp=1, tp=1, pp=2)
    bad["train"]["precision"] = "bf16-mixed"
    args = tmp_path / "args.json"
    args.write_text(
        json.dumps({"config": bad, "baseDir": str(EXAMPLE.parent), "start": {"kind": "fresh"}, "device": "cpu"})
    )
    out = subprocess.run(
        [sys.executable, "-m", "scalelm.train", "--check", "--args", str(args)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PYTHON_DIR)},
        timeout=120,
    )
    assert out.returncode == 2
    assert "pipeline parallelism" in out.stderr and "needs CUDA GPUs" in out.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    out = subprocess.run(
        [sys.executable, "-m", "scalelm.train", "--check", "--args", str(broken)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PYTHON_DIR)},
        timeout=120,
    )
    assert out.returncode == 2 and f"cannot use --args {broken}" in out.stderr and "Traceback" not in out.stderr
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps({"config": config, "baseDir": str(EXAMPLE.parent), "device": "cpu"}))
    assert (
        subprocess.run(
            [sys.executable, "-m", "scalelm.train", "--check", "--args", str(ok)],
            capture_output=True,
            env={**os.environ, "PYTHONPATH": str(PYTHON_DIR)},
            timeout=120,
        ).returncode
        == 0
    )


def test_torch_resumes_local_checkpoint_in_another_layout(
    reference: tuple[Path, dict[str, Any], list[float]], tmp_path: Path
) -> None:
    run, config, local = reference
    _, msgs = torch_train(
        tmp_path,
        with_layout(config, dp=2, tp=2, zero=3),
        start={"kind": "resume", "folder": str(run / "checkpoints" / "step-000006")},
    )
    got = [m for m in msgs if m["type"] == "step"]
    assert [m["step"] for m in got] == list(range(7, 13))
    assert max_rel(losses(msgs), local[6:]) < 1e-4


def test_resume_torch_checkpoint_same_and_other_layout_and_on_the_local_engine(
    reference: tuple[Path, dict[str, Any], list[float]], tmp_path: Path
) -> None:
    run, config, local = reference
    first = with_layout(config, dp=2, tp=1, zero=1)
    first["train"]["checkpointEvery"] = 6  # the same 12-step schedule, with a checkpoint half way
    trun = tmp_path / "torch-run"
    torch_train(tmp_path / "a", first, run_dir=trun)
    assert json.loads((trun / "checkpoints" / "latest.json").read_text())["step"] == 12
    ck = trun / "checkpoints" / "step-000006"
    state = json.loads((ck / "state.json").read_text())
    assert state["step"] == 6 and state["optimizer"]["steps"] == 6
    for name, layout in (("same", dict(dp=2, tp=1, zero=1)), ("other", dict(dp=1, tp=2, zero=0))):
        _, msgs = torch_train(
            tmp_path / name, with_layout(config, **layout), start={"kind": "resume", "folder": str(ck)}
        )
        assert max_rel(losses(msgs), local[6:]) < 1e-4, name
    # The local engine continues the torch engine's checkpoint: a copy of its own run folder whose step-6
    # checkpoint is the torch engine's.
    lrun = tmp_path / "local-run"
    shutil.copytree(run, lrun)
    shutil.rmtree(lrun / "checkpoints")
    (lrun / "checkpoints").mkdir()
    shutil.copytree(ck, lrun / "checkpoints" / "step-000006")
    (lrun / "checkpoints" / "latest.json").write_text(json.dumps({"step": 6, "folder": "step-000006"}))
    # The torch checkpoint was taken without a coordinator (metricsBytes 0); graft it at the local run's own
    # step 6: its metrics.jsonl is cut after step 6's record, as a checkpoint taken in this run would say.
    offset = 0
    for line in (lrun / "metrics.jsonl").read_bytes().splitlines(keepends=True):
        offset += len(line)
        m = json.loads(line)
        if m["type"] == "step" and m["step"] == 6:
            break
    grafted = json.loads((lrun / "checkpoints" / "step-000006" / "state.json").read_text())
    grafted["metricsBytes"] = offset
    (lrun / "checkpoints" / "step-000006" / "state.json").write_text(json.dumps(grafted))
    from engines import need_cli

    out = subprocess.run(
        ["node", str(need_cli()), "train", "--resume", str(lrun)], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    steps = [m for m in map(json.loads, (lrun / "metrics.jsonl").read_text().splitlines()) if m["type"] == "step"]
    assert [m["step"] for m in steps] == list(range(1, 13))  # the local run's 1-6, then the resumed 7-12
    assert max_rel([m["loss"] for m in steps[6:]], local[6:]) < 1e-4
