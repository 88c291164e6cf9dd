"""`scalelm export --to deepspeed` is read by DeepSpeed's own config parser (DeepSpeedConfig), with the data-
parallel size the exported layout will run at: the batch arithmetic, ZeRO stage, precision, scheduler and
activation checkpointing must be what DeepSpeed itself accepts and reads back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from engines import REPO, need_cli

pytest.importorskip("deepspeed")

LLAMA70B = REPO / "examples" / "llama-2-70b-h100.scalelm.json"

# DeepSpeed reads its world size from torch.distributed: a one-process gloo group, with the data-parallel
# size supplied the way Megatron-DeepSpeed does (an mpu). One subprocess validates every case (the import is
# slow) and prints what DeepSpeed parsed.
VALIDATE = r"""
import json, os, sys
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[1], RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
import deepspeed
deepspeed.init_distributed(dist_backend="gloo", auto_mpi_discovery=False, verbose=False)
from deepspeed.runtime.config import DeepSpeedConfig

class Mpu:
    def __init__(self, dp):
        self.dp = dp
    def get_data_parallel_world_size(self):
        return self.dp

out = []
for case in json.load(sys.stdin):
    try:
        c = DeepSpeedConfig(case["config"], mpu=Mpu(case["dp"]))
        out.append({"ok": True, "batch": c.train_batch_size, "micro": c.train_micro_batch_size_per_gpu,
                    "accumulation": c.gradient_accumulation_steps, "zero": int(c.zero_optimization_stage),
                    "scheduler": c.scheduler_name, "bf16": bool(c.bfloat16_config.enabled),
                    "clipping": c.gradient_clipping})
    except Exception as e:
        out.append({"ok": False, "error": f"{type(e).__name__}: {e}"})
print("RESULTS " + json.dumps(out))
"""


def export(config: Path, *sets: str) -> dict[str, Any]:
    cmd = ["node", str(need_cli()), "export", str(config), "--to", "deepspeed"]
    for s in sets:
        cmd += ["--set", s]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def deepspeed_reads(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    port = str(29400 + (hash(str(cases)) % 500))
    out = subprocess.run(
        [sys.executable, "-c", VALIDATE, port], input=json.dumps(cases), capture_output=True, text=True, timeout=600
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULTS ")]
    assert out.returncode == 0 and lines, out.stderr[-3000:]
    return json.loads(lines[0][len("RESULTS ") :])  # type: ignore[no-any-return]


def test_deepspeed_parses_the_exported_configs_at_their_data_parallel_size() -> None:
    layouts = [
        # (sets, dp): the example's own layout (tp 8, pp 4 -> dp 4 on 128 GPUs), ZeRO-3 across all 128 GPUs,
        # and ZeRO-2 with micro-batch 2 and full recompute.
        ([], 4),
        (
            [
                "parallel.tp=1",
                "parallel.pp=1",
                "parallel.vpp=1",
                "parallel.dp=128",
                "parallel.zero=3",
                "parallel.sequenceParallel=false",
                "train.recompute=full",
            ],
            128,
        ),
        (
            [
                "parallel.tp=8",
                "parallel.pp=1",
                "parallel.vpp=1",
                "parallel.dp=16",
                "parallel.zero=2",
                "train.microBatch=2",
            ],
            16,
        ),
    ]
    exported = [export(LLAMA70B, *sets) for sets, _ in layouts]
    parsed = deepspeed_reads([{"config": c, "dp": dp} for c, (_, dp) in zip(exported, layouts, strict=True)])
    for (sets, dp), config, got in zip(layouts, exported, parsed, strict=True):
        assert got["ok"], (sets, got)
        assert got["batch"] == 512 == got["micro"] * got["accumulation"] * dp, (sets, got)
        assert got["zero"] == config["zero_optimization"]["stage"]
        assert got["bf16"] is True and got["scheduler"] == "WarmupCosineLR" and got["clipping"] == 1
    # A layout exported for one data-parallel size is refused by DeepSpeed at another: the check is real.
    wrong = deepspeed_reads([{"config": exported[0], "dp": 8}])[0]
    assert not wrong["ok"] and "train_batch_size" in wrong["error"]
