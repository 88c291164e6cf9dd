"""Checkpoints in the local engine's single-device format (runtime/train/checkpoint.ts), so either engine
resumes the other's and HuggingFace transformers loads the weights:

  model.safetensors      HF names (GPT-2: wte.weight, h.0.attn.c_attn.weight in Conv1D layout; Llama:
                         model.layers.0.self_attn.q_proj.weight …), the real vocabulary
  optimizer.safetensors  <name>.exp_avg / <name>.exp_avg_sq (or momentum_buffer), metadata kind and steps
  config.json            HF GPT2Config / LlamaConfig
  state.json             step, tokens, data position, seed, optimizer hyper-parameters and steps, model shape

The ranks gather the full tensors and rank 0 writes them into a temporary folder; the coordinator (or, with
no coordinator, rank 0) renames it into place and points latest.json at it, as the local engine does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from typing import Any

import torch

from .model import EPS, ROPE_THETA, ParamSpec, Shape
from .safetensors import read_safetensors, write_safetensors

FORMAT = "scalelm-checkpoint"
VERSION = 1
KEEP = 3


class CheckpointError(Exception):
    pass


def step_folder(step: int) -> str:
    return f"step-{step:06d}"


def state_slots(kind: str) -> list[str]:
    return ["momentum_buffer"] if kind == "sgd" else ["exp_avg", "exp_avg_sq"]


def model_state(s: Shape) -> dict[str, Any]:
    """state.json's `model`: the local engine's GptShape (plus the family for Llama)."""
    out: dict[str, Any] = {
        "layers": s.layers,
        "hidden": s.hidden,
        "heads": s.heads,
        "vocab": s.vocab,
        "positions": s.positions,
        "ffnHidden": s.ffn,
        "eps": EPS,
    }
    if s.family != "gpt2":
        out.update(family=s.family, kvHeads=s.kv_heads)
    return out


def hf_config(s: Shape) -> dict[str, Any]:
    if s.family == "gpt2":
        return {
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "vocab_size": s.vocab,
            "n_positions": s.positions,
            "n_ctx": s.positions,
            "n_embd": s.hidden,
            "n_layer": s.layers,
            "n_head": s.heads,
            "n_inner": None if s.ffn == 4 * s.hidden else s.ffn,
            "activation_function": "gelu_new",
            "layer_norm_epsilon": EPS,
            "initializer_range": 0.02,
            "resid_pdrop": s.dropout,
            "embd_pdrop": s.dropout,
            "attn_pdrop": s.dropout,
            "scale_attn_weights": True,
            "tie_word_embeddings": True,
            "torch_dtype": "float32",
        }
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": s.vocab,
        "hidden_size": s.hidden,
        "intermediate_size": s.ffn,
        "num_hidden_layers": s.layers,
        "num_attention_heads": s.heads,
        "num_key_value_heads": s.kv_heads,
        "max_position_embeddings": s.positions,
        "rms_norm_eps": EPS,
        "rope_theta": ROPE_THETA,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "attention_bias": False,
        "attention_dropout": s.dropout,
        "initializer_range": 0.02,
        "torch_dtype": "float32",
    }


def _write_text(file: str, text: str) -> int:
    with open(file, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return len(text.encode())


def write_full(
    folder: str,
    specs: list[ParamSpec],
    params: dict[str, torch.Tensor],
    optimizer: dict[str, list[torch.Tensor]],
    state: dict[str, Any],
    shape: Shape,
) -> int:
    """Writes the four files into `folder` (state.json last: a folder without it is never a checkpoint)."""
    os.makedirs(folder, exist_ok=True)
    n = write_safetensors(
        os.path.join(folder, "model.safetensors"), [(p.name, params[p.name]) for p in specs], {"format": "pt"}
    )
    kind = state["optimizer"]["kind"]
    opt = [
        (f"{p.name}.{slot}", optimizer[p.name][i])
        for p in specs
        if p.name in optimizer
        for i, slot in enumerate(state_slots(kind))
    ]
    n += write_safetensors(
        os.path.join(folder, "optimizer.safetensors"),
        opt,
        {"format": "pt", "kind": kind, "steps": str(state["optimizer"]["steps"])},
    )
    n += _write_text(os.path.join(folder, "config.json"), json.dumps(hf_config(shape), indent=2) + "\n")
    n += _write_text(os.path.join(folder, "state.json"), json.dumps(state, indent=2) + "\n")
    return n


def commit(checkpoints: str, tmp: str, step: int) -> str:
    """Renames a written folder into place and points latest.json at it (runtime's commitCheckpointFolder)."""
    name = step_folder(step)
    final = os.path.join(checkpoints, name)
    if os.path.exists(final):
        old = os.path.join(checkpoints, f".old-{name}-{os.getpid()}-{int(time.time() * 1000)}")
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    latest_tmp = os.path.join(checkpoints, f".latest-{os.getpid()}.json")
    _write_text(latest_tmp, json.dumps({"step": step, "folder": name}) + "\n")
    os.replace(latest_tmp, os.path.join(checkpoints, "latest.json"))
    complete = sorted(f for f in os.listdir(checkpoints) if re.fullmatch(r"step-\d+", f))
    for f in complete[:-KEEP]:
        shutil.rmtree(os.path.join(checkpoints, f), ignore_errors=True)
    return final


def latest(checkpoints: str) -> str | None:
    if not os.path.isdir(checkpoints):
        return None
    try:
        with open(os.path.join(checkpoints, "latest.json")) as f:
            folder = json.load(f).get("folder")
        if folder and os.path.exists(os.path.join(checkpoints, folder, "state.json")):
            return os.path.join(checkpoints, folder)
    except (OSError, ValueError):
        pass
    complete = sorted(
        f
        for f in os.listdir(checkpoints)
        if re.fullmatch(r"step-\d+", f) and os.path.exists(os.path.join(checkpoints, f, "state.json"))
    )
    return os.path.join(checkpoints, complete[-1]) if complete else None


def resolve_resume(path: str) -> str:
    """A checkpoint folder, a checkpoints/ folder or a run directory → the checkpoint folder to resume."""
    if os.path.exists(os.path.join(path, "state.json")):
        return path
    for d in (os.path.join(path, "checkpoints"), path):
        found = latest(d)
        if found:
            return found
    raise CheckpointError(f"{path} holds no complete checkpoint to resume from; start the run again without --resume")


def model_tensors(file: str, specs: list[ParamSpec]) -> dict[str, torch.Tensor]:
    """Parameters by name from a safetensors file (a ScaleLM or HF checkpoint), checked name by name and shape."""
    raw, _ = read_safetensors(file)
    by: dict[str, torch.Tensor] = {}
    for key, t in raw.items():
        name = key[len("transformer.") :] if key.startswith("transformer.") else key
        if re.fullmatch(r"h\.\d+\.attn\.(masked_)?bias", name) or (
            name == "lm_head.weight" and "wte.weight" in {k.removeprefix("transformer.") for k in raw}
        ):
            continue
        by[name] = t
    out: dict[str, torch.Tensor] = {}
    missing: list[str] = []
    for p in specs:
        if p.name not in by:
            missing.append(p.name)
            continue
        t = by.pop(p.name)
        if tuple(t.shape) != p.shape:
            raise CheckpointError(f"{file}: {p.name} has shape {list(t.shape)}, the model needs {list(p.shape)}")
        out[p.name] = t
    if missing:
        raise CheckpointError(f"{file}: missing {len(missing)} parameters of this model, e.g. {', '.join(missing[:3])}")
    if by:
        raise CheckpointError(f"{file}: {len(by)} tensors this model does not have, e.g. {', '.join(list(by)[:3])}")
    return out


def read_full(
    folder: str, specs: list[ParamSpec], shape: Shape, kind: str
) -> tuple[dict[str, torch.Tensor], dict[str, list[torch.Tensor]], dict[str, Any]]:
    path = os.path.join(folder, "state.json")
    try:
        with open(path) as f:
            state: dict[str, Any] = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing: this folder is not a complete ScaleLM checkpoint") from None
    except ValueError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    # Lenient where the coordinator's state.json may leave a field out; strict where it says something else.
    if state.get("format", FORMAT) != FORMAT or state.get("version", VERSION) != VERSION:
        raise CheckpointError(f"{path}: not a {FORMAT} version {VERSION} state")
    if "model" in state:
        want = model_state(shape)
        diffs = [f"{k} {state['model'].get(k)} (now {v})" for k, v in want.items() if state["model"].get(k, v) != v]
        if diffs:
            raise CheckpointError(f"{folder} was trained with a different model: {', '.join(diffs)}")
    if not os.path.exists(os.path.join(folder, "model.safetensors")):
        raise CheckpointError(
            f"{folder} is a sharded checkpoint of the local engine; run `scalelm checkpoint consolidate {folder}` first"
        )
    params = model_tensors(os.path.join(folder, "model.safetensors"), specs)
    raw, meta = read_safetensors(os.path.join(folder, "optimizer.safetensors"))
    saved_kind = state.get("optimizer", {}).get("kind", meta.get("kind", kind))
    if saved_kind != kind:
        raise CheckpointError(f"{folder} holds {saved_kind} state but train.optimizer is {kind}")
    opt_info = state.setdefault("optimizer", {})
    opt_info.setdefault("steps", int(meta.get("steps", state.get("step", 0))))
    opt: dict[str, list[torch.Tensor]] = {}
    for p in specs:
        slots = []
        for slot in state_slots(kind):
            t = raw.get(f"{p.name}.{slot}")
            if t is None:
                raise CheckpointError(f"{folder}/optimizer.safetensors: missing optimizer tensor {p.name}.{slot}")
            slots.append(t.reshape(p.shape))
        opt[p.name] = slots
    return params, opt, state


def init_weights(folder: str, specs: list[ParamSpec]) -> dict[str, torch.Tensor]:
    """--init-from: a ScaleLM checkpoint folder or a HuggingFace folder with model.safetensors."""
    file = os.path.join(folder, "model.safetensors")
    if not os.path.exists(file):
        raise CheckpointError(
            f"--init-from {folder}: no model.safetensors there (a ScaleLM checkpoint or a HuggingFace model folder)"
        )
    return model_tensors(file, specs)
