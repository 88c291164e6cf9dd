"""Memory per category on every rank, measured by the torch engine on CPU, against the planner's `torch`
convention (runtime/planner/torch-model.ts, run by node in the test): equal, category by category."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from engines import REPO, ChannelServer, llama_shaped, torch_train, with_layout

PLAN = """
const { planTarget } = require(process.argv[1] + '/out/runtime/planner/target.js');
const { estimate } = require(process.argv[1] + '/out/runtime/planner/estimate.js');
const config = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const r = estimate(planTarget(config).input, { convention: 'torch' });
if (!r.ok) { console.log(JSON.stringify(r.issues)); process.exit(1); }
console.log(JSON.stringify(r.memory.perDevice));
"""


def predicted(config: dict[str, Any]) -> dict[str, float]:
    if not (REPO / "out" / "runtime" / "planner" / "torch-model.js").exists() or not shutil.which("node"):
        pytest.skip("the planner is not compiled (npx tsc -p .)")
    out = subprocess.run(
        ["node", "-e", PLAN, str(REPO)], input=json.dumps(config), capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "family,layout,recompute",
    [
        ("gpt2", dict(dp=2, tp=1, zero=1), "none"),
        ("gpt2", dict(dp=1, tp=2, zero=0), "selective"),
        ("gpt2", dict(dp=2, tp=1, zero=3), "full"),
        ("llama", dict(dp=2, tp=2, zero=3), "none"),
    ],
    ids=["gpt2-dp2-zero1", "gpt2-tp2-selective", "gpt2-dp2-zero3-full", "llama-gqa-dp2-tp2-zero3"],
)
def test_measured_equals_the_torch_convention(
    family: str, layout: dict[str, int], recompute: str, small_config: dict[str, Any], tmp_path: Path
) -> None:
    config = with_layout(small_config if family == "gpt2" else llama_shaped(small_config), **layout)
    config["train"].update(steps=2, recompute=recompute)
    if family == "llama":
        config["model"]["heads"] = 4  # GQA: 4 query heads, 2 key/value heads
    plan = predicted(config)
    server = ChannelServer(tmp_path, "ef" * 32)
    try:
        torch_train(tmp_path, config, env=server.env())
    finally:
        server.close()
    mem = [x["m"] for x in server.of("msg") if x["m"]["type"] == "memory"]
    assert {m["rank"] for m in mem} == set(range(layout["dp"] * layout["tp"]))
    for cat in ("params", "grads", "optimizer", "activations", "buffers"):
        measured = max(m["categories"][cat] for m in mem)
        assert measured == plan[cat], f"{cat}: measured {measured}, predicted {plan[cat]}"
