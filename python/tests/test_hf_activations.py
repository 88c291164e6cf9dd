"""The planner's HuggingFace activation model (runtime/planner/torch-model.ts hfActivationTerms) against what
autograd really saves: tiny randomly initialised GPT-2 and Llama models (transformers, no download), eager and
sdpa, dropout on and off, measured with the Monitor's own counter (scalelm.memory.SavedTensorCounter: unique
storages saved for backward in one forward) and predicted by the launch plan's code (out/runtime/launch/plan.js
predictFromReport on the shape line scalelm/shape.py reports, as the coordinator parses it) and by the built CLI
(`scalelm estimate config.json --convention torch --json` on the model's saved config.json).

Both sides count whole fp32/int64 storages of shapes fixed by (batch, seq, hidden, heads, kv heads, ffn, vocab,
layers): nothing is rounded, sampled or allocator-dependent on CPU, so the prediction must equal the
measurement to the byte (tolerance 0); any difference is a term the model gets wrong."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
from engines import REPO

from scalelm.memory import SavedTensorCounter
from scalelm.shape import detect_layout, hf_shape

transformers = pytest.importorskip("transformers")

CLI = REPO / "out" / "runtime" / "cli.js"
PLAN = REPO / "out" / "runtime" / "launch" / "plan.js"
CHANNEL = REPO / "out" / "runtime" / "parallel" / "shape-report.js"

# (family, attention, batch, seq, hidden, heads, kv heads, layers, dropout)
CASES: list[tuple[str, str, int, int, int, int, int, int, float]] = [
    ("gpt2", "eager", 2, 16, 32, 2, 2, 2, 0.1),  # the launch test's model: hf_ddp.py
    ("gpt2", "eager", 3, 8, 48, 4, 4, 1, 0.0),
    ("gpt2", "sdpa", 1, 24, 32, 2, 2, 3, 0.0),  # flash kernel
    ("gpt2", "sdpa", 2, 12, 64, 8, 8, 2, 0.1),  # attention dropout: the math kernel
    ("llama", "eager", 2, 16, 32, 4, 2, 2, 0.0),
    ("llama", "sdpa", 3, 8, 48, 6, 2, 1, 0.0),  # GQA: k and v unrepeated
    ("llama", "sdpa", 1, 20, 32, 4, 4, 3, 0.0),
    ("llama", "eager", 2, 12, 64, 8, 4, 2, 0.1),
]


def build(family: str, attn: str, hidden: int, heads: int, kv: int, layers: int, seq: int, p: float) -> Any:
    if family == "gpt2":
        cfg = transformers.GPT2Config(
            vocab_size=96, n_positions=seq, n_embd=hidden, n_layer=layers, n_head=heads,
            resid_pdrop=p, embd_pdrop=p, attn_pdrop=p, attn_implementation=attn,
        )  # fmt: skip
        return transformers.GPT2LMHeadModel(cfg)
    cfg = transformers.LlamaConfig(
        vocab_size=96, hidden_size=hidden, intermediate_size=3 * hidden - 8, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=seq,
        attention_dropout=p, attn_implementation=attn,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(cfg)


def predict(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The coordinator's parse of each shape line, then the launch plan's prediction and log lines."""
    if not PLAN.exists() or not shutil.which("node"):
        pytest.skip("runtime/ is not compiled (npx tsc -p .)")
    code = (
        "const {parseShapeLine}=require(process.argv[1]);const {predictFromReport}=require(process.argv[2]);"
        "const ls=JSON.parse(require('fs').readFileSync(0,'utf8'));"
        "console.log(JSON.stringify(ls.map((l)=>{const p=parseShapeLine(l);if(!p.ok)throw new Error(p.what);"
        "return predictFromReport(p.value)})))"
    )
    out = subprocess.run(
        ["node", "-e", code, str(CHANNEL), str(PLAN)],
        input=json.dumps(lines),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result: list[dict[str, Any]] = json.loads(out.stdout)
    return result


def estimate_activations(config: Path, batch: int, seq: int) -> int:
    """`scalelm estimate` on a HuggingFace config.json, fp32 on one device in the torch convention."""
    flags = ["--convention", "torch", "--precision", "fp32", "--gpus", "1", "--micro-batch", str(batch)]
    out = subprocess.run(
        ["node", str(CLI), "estimate", str(config), *flags, "--seq-len", str(seq), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert any("activations)" in n for n in result["notes"]), result["notes"]
    activations: int = result["perDevice"]["activations"]
    return activations


def test_predicted_activations_equal_what_autograd_saves(tmp_path: Path) -> None:
    measured: list[int] = []
    configs: list[Path] = []
    lines: list[dict[str, Any]] = []
    for family, attn, batch, seq, hidden, heads, kv, layers, p in CASES:
        torch.manual_seed(0)
        model = build(family, attn, hidden, heads, kv, layers, seq, p)
        model.train()
        opt = torch.optim.AdamW(model.parameters())
        ids = torch.randint(0, 96, (batch, seq))
        counter = SavedTensorCounter()
        with counter.counting():
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        measured.append(counter.bytes)
        layout = {**detect_layout(model, opt, 1), "microBatch": batch, "seqLen": seq}
        lines.append({"k": "shape", "rank": 0, "model": hf_shape(model), "layout": layout})
        config = tmp_path / f"{len(configs)}.config.json"
        # save_pretrained's config.json leaves the attention implementation out: say it, as a user would.
        config.write_text(json.dumps({**model.config.to_dict(), "_attn_implementation": attn}))
        configs.append(config)
    plans = predict(lines)
    for case, got, plan, config in zip(CASES, measured, plans, configs, strict=True):
        assert "predicted" in plan, (case, plan)
        impl = f"hf-{case[1]} activations"
        assert impl in plan["lines"][0], (case, plan["lines"])
        assert plan["predicted"]["activations"] == got, (case, got, plan["predicted"]["activations"])
        assert estimate_activations(config, case[2], case[3]) == got, case


def test_a_model_without_an_activation_model_says_so() -> None:
    # gelu (exact) saves less than gelu_new: not modelled, and the log says the plan fell back.
    cfg = transformers.GPT2Config(
        vocab_size=96, n_positions=8, n_embd=32, n_layer=1, n_head=2, activation_function="gelu",
        attn_implementation="eager",
    )  # fmt: skip
    model = transformers.GPT2LMHeadModel(cfg)
    layout = {**detect_layout(model, None, 1), "microBatch": 1, "seqLen": 8}
    (plan,) = predict([{"k": "shape", "rank": 0, "model": hf_shape(model), "layout": layout}])
    assert "activations" not in plan["lines"][0].split("):")[0], plan["lines"]
    assert any('activation_function "gelu": only gelu_new is modelled' in line for line in plan["lines"]), plan["lines"]
