"""Runs both engines for the tests: the local engine through the built CLI (node dist/cli.js), the torch
engine through real torchrun subprocesses (gloo, CPU). Nothing is mocked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON_DIR = REPO / "python"
EXAMPLE = REPO / "examples" / "tiny-parallel.scalelm.json"
# A small GPT-2 on the example's text: fast on two shared cores, with accumulation (8 = 2 dp x 2 x 2).
SMALL = [
    "model.layers=2",
    "model.hidden=32",
    "model.heads=4",
    "model.ffnHidden=128",
    "model.seqLen=32",
    "train.checkpointEvery=0",
    "train.evalEvery=10",
]


def need_cli() -> Path:
    cli = REPO / "dist" / "cli.js"
    if not cli.exists() or not shutil.which("node"):
        pytest.skip("the local engine's CLI is not built (node scripts/build.mjs)")
    return cli


def local_train(run_dir: Path, sets: list[str], steps: int, *extra: str) -> list[dict[str, Any]]:
    """Trains with the local engine; returns its step messages (metrics.jsonl)."""
    cli = need_cli()
    cmd = ["node", str(cli), "train", str(EXAMPLE), "--run-dir", str(run_dir), "--set", f"train.steps={steps}"]
    for s in sets:
        cmd += ["--set", s]
    out = subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return [m for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if m["type"] == "step"]


def resolved_config(run_dir: Path) -> dict[str, Any]:
    """The resolved RunConfig the local CLI wrote into its run folder."""
    return json.loads((run_dir / "config.json").read_text())  # type: ignore[no-any-return]


def with_layout(config: dict[str, Any], **parallel: int) -> dict[str, Any]:
    c = json.loads(json.dumps(config))
    c["parallel"].update(parallel)
    return c


def torch_train(
    tmp: Path,
    config: dict[str, Any],
    *,
    start: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    check: bool = True,
    run_dir: Path | None = None,
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """One torch-engine run under torchrun; returns the process and the messages rank 0 printed."""
    p = config["parallel"]
    world = p["dp"] * p["tp"]
    tmp.mkdir(parents=True, exist_ok=True)
    args = tmp / "torch-args.json"
    args.write_text(
        json.dumps(
            {"config": config, "baseDir": str(EXAMPLE.parent), "start": start or {"kind": "fresh"}, "device": "cpu"}
        )
    )
    e = {**os.environ, "PYTHONPATH": str(PYTHON_DIR), "OMP_NUM_THREADS": "1", **(env or {})}
    for k in ("SCALELM_CHANNEL", "SCALELM_CHECKPOINT_TEMPLATE"):
        if k not in (env or {}):
            e.pop(k, None)
    if run_dir is not None:
        e["SCALELM_RUN_DIR"] = str(run_dir)
    else:
        e.pop("SCALELM_RUN_DIR", None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(world),
        "--standalone",
        "--max-restarts",
        "0",
        "-m",
        "scalelm.train",
        "--args",
        str(args),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e, cwd=tmp)
    if check:
        assert out.returncode == 0, out.stderr[-4000:]
    msgs = [json.loads(line[len("SCALELM ") :]) for line in out.stdout.splitlines() if line.startswith("SCALELM ")]
    return out, msgs


def losses(msgs: list[dict[str, Any]]) -> list[float]:
    return [m["loss"] for m in msgs if m["type"] == "step"]


def max_rel(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b), (len(a), len(b))
    return max(abs(x - y) / abs(y) for x, y in zip(a, b, strict=True))


class ChannelServer:
    """A stand-in for the coordinator's side of the rank channel (a Unix socket, one JSON object per line):
    records every line per rank and lets a test react to them (send control lines, kill a rank)."""

    def __init__(self, folder: Path, token: str, on_line: Any = None) -> None:
        import socket
        import threading

        self.path = str(folder / "channel.sock")
        self.token = token
        self.lines: list[dict[str, Any]] = []
        self.conns: dict[int, Any] = {}
        self.on_line = on_line
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"unix:{self.path}"

    def env(self) -> dict[str, str]:
        return {"SCALELM_CHANNEL": self.address, "SCALELM_CHANNEL_TOKEN": self.token}

    def _accept(self) -> None:
        import threading

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: Any) -> None:
        f = conn.makefile("rb")
        for raw in f:
            obj = json.loads(raw)
            with self.lock:
                self.lines.append(obj)
                if obj["k"] == "hello":
                    self.conns[obj["rank"]] = conn
            if self.on_line:
                self.on_line(self, obj)
            if obj["k"] == "progress" and obj.get("sync"):
                # As the coordinator: acknowledge after every request made while handling the line.
                conn.sendall((json.dumps({"k": "ack", "step": obj["step"]}) + "\n").encode())

    def send(self, rank: int, obj: dict[str, Any]) -> None:
        self.conns[rank].sendall((json.dumps(obj) + "\n").encode())

    def of(self, k: str) -> list[dict[str, Any]]:
        with self.lock:
            return [x for x in self.lines if x["k"] == k]

    def close(self) -> None:
        self.sock.close()


def check_messages(messages: list[dict[str, object]]) -> None:
    if not (REPO / "out" / "common" / "protocol.js").exists() or not shutil.which("node"):
        pytest.skip("common/ is not compiled (npx tsc -p .)")
    code = (
        "const {validateMessage}=require(process.argv[1]);const ms=JSON.parse(require('fs').readFileSync(0,'utf8'));"
        "for(const m of ms){const r=validateMessage(m);if(!r.ok){console.log(JSON.stringify(r));process.exit(1)}}"
    )
    out = subprocess.run(
        ["node", "-e", code, str(REPO / "out" / "common" / "protocol.js")],
        input=json.dumps(messages),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def llama_shaped(config: dict[str, Any]) -> dict[str, Any]:
    """The same small model as a Llama: SwiGLU, RMSNorm, RoPE, untied, no biases, grouped-query attention."""
    c = json.loads(json.dumps(config))
    c["model"].update(
        activation="swiglu",
        norm="rmsnorm",
        tiedEmbeddings=False,
        bias=False,
        positionEmbedding="rope",
        kvHeads=2,
        ffnHidden=64,
    )
    return c


@pytest.fixture(scope="module")
def small_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The resolved config of the small GPT-2 (SMALL), as the local engine's CLI writes it."""
    run = tmp_path_factory.mktemp("cfg") / "run"
    local_train(run, SMALL, 1)
    return resolved_config(run)


def train_tiny_gpt2(
    tmp_path: Path,
    env: dict[str, str],
    *,
    max_steps: int,
    n_positions: int = 32,
    accum: int = 1,
    logging_steps: int = 1,
) -> Any:
    """A tiny random GPT-2 (no download) trained by transformers.Trainer on CPU for max_steps, with the
    Monitor's TrainerCallback and `env` set only while it trains. Returns the model."""
    import torch
    import transformers

    from scalelm.integrations import transformers_callback

    cfg = transformers.GPT2Config(vocab_size=64, n_positions=n_positions, n_embd=16, n_layer=1, n_head=2)
    model = transformers.GPT2LMHeadModel(cfg)
    samples = 4 * accum * max_steps
    data = [{"input_ids": torch.randint(0, 64, (16,)), "labels": torch.randint(0, 64, (16,))} for _ in range(samples)]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=max_steps,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=accum,
        logging_steps=logging_steps,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
    )
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        transformers.Trainer(
            model=model, args=args, train_dataset=data, callbacks=[transformers_callback("hf")]
        ).train()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return model
