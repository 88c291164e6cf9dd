"""`scalelm export --to megatron` against Megatron-Core's own configuration classes.

PyPI's megatron-core ships only `megatron/core`: Megatron-LM's argument parser (`megatron/training/arguments.py`,
`parse_args`) is not in the wheel, so the whole command line cannot be parsed here. What the wheel does ship is
the dataclasses that parser fills: `TransformerConfig` (with `ModelParallelConfig`), whose fields carry their
command-line names (`argparse_meta`, default `--field-name`) and whose `__post_init__` rejects inconsistent
layouts. The exported model and parallelism arguments are mapped through those names, built into a
`TransformerConfig` (which must accept them), and read back."""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
import typing
from pathlib import Path
from typing import Any

import pytest
import torch
from engines import REPO, need_cli

pytest.importorskip("megatron.core")
from megatron.core.transformer.transformer_config import TransformerConfig

EXAMPLES = [REPO / "examples" / "llama-2-70b-h100.scalelm.json", REPO / "examples" / "tiny-parallel.scalelm.json"]

# Exported arguments that are fields of TransformerConfig under their Megatron command-line name; each must map.
CORE = {
    "--tensor-model-parallel-size": "tensor_model_parallel_size",
    "--pipeline-model-parallel-size": "pipeline_model_parallel_size",
    "--num-layers": "num_layers",
    "--hidden-size": "hidden_size",
    "--num-attention-heads": "num_attention_heads",
    "--ffn-hidden-size": "ffn_hidden_size",
    "--sequence-parallel": "sequence_parallel",
    "--recompute-granularity": "recompute_granularity",
}


def exported_args(config: Path) -> list[str]:
    """The arguments the exported script passes to pretrain_gpt.py (quotes resolved, `$VAR`s left as text)."""
    out = subprocess.run(
        ["node", str(need_cli()), "export", str(config), "--to", "megatron"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    words = shlex.split(out.stdout.replace("\\\n", " "), comments=True)
    start = next(i for i, w in enumerate(words) if w.endswith("pretrain_gpt.py"))
    return [w for w in words[start + 1 :] if w != "$@"]


def cli_names() -> dict[str, dataclasses.Field[Any]]:
    """Megatron's command-line name of each TransformerConfig field, as its own metadata declares it."""
    names: dict[str, dataclasses.Field[Any]] = {}
    for f in dataclasses.fields(TransformerConfig):
        meta = f.metadata.get("argparse_meta", {})
        for name in meta.get("arg_names", ["--" + f.name.replace("_", "-")]):
            names[name] = f
    return names


def to_config(args: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Fields for TransformerConfig from the arguments it has; the rest (training, data, tokenizer) returned by name."""
    names = cli_names()
    hints = typing.get_type_hints(TransformerConfig)
    fields: dict[str, Any] = {}
    other: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        has_value = i + 1 < len(args) and not args[i + 1].startswith("--")
        f = names.get(arg)
        if f is None:
            other.append(arg)
        elif not has_value:
            # A flag flips a boolean field's default (--disable-bias-linear: add_bias_linear True → False).
            fields[f.name] = not f.default if isinstance(f.default, bool) else True
        else:
            kind = hints[f.name]
            text = args[i + 1]
            fields[f.name] = (
                int(text) if kind in (int, int | None) else float(text) if kind in (float, float | None) else text
            )
        i += 2 if has_value else 1
    # Megatron-LM's core_transformer_config_from_args derives this one: kw_args['pipeline_dtype'] = args.params_dtype
    # (bf16 with --bf16, fp16 with --fp16, else fp32).
    fields["pipeline_dtype"] = (
        torch.bfloat16 if fields.get("bf16") else torch.float16 if fields.get("fp16") else torch.float32
    )
    return fields, other


@pytest.mark.parametrize("config", EXAMPLES, ids=lambda p: p.name)
def test_transformer_config_accepts_the_exported_model_and_parallel_arguments(config: Path) -> None:
    args = exported_args(config)
    fields, other = to_config(args)
    for flag, field in CORE.items():
        if flag in args:
            assert field in fields, f"{flag} is not TransformerConfig.{field}'s command-line name"
    assert {"num_layers", "hidden_size", "num_attention_heads", "tensor_model_parallel_size"} <= fields.keys()
    cfg = TransformerConfig(**fields)  # __post_init__ validates the combination
    for field, value in fields.items():
        assert getattr(cfg, field) == value, field
    assert cfg.bf16 == ("--bf16" in args) and cfg.sequence_parallel == ("--sequence-parallel" in args)
    assert cfg.add_bias_linear == ("--disable-bias-linear" not in args)
    assert cfg.num_attention_heads % cfg.tensor_model_parallel_size == 0
    print(f"{config.name}: TransformerConfig took {sorted(fields)}; not its fields (need megatron/training): {other}")


def test_transformer_config_rejects_what_the_export_refuses() -> None:
    """The same path fails loudly on a layout Megatron rejects: sequence parallelism without tensor parallelism."""
    args = "--num-layers 2 --hidden-size 64 --num-attention-heads 4 --tensor-model-parallel-size 1 --sequence-parallel"
    fields, _ = to_config(args.split())
    with pytest.raises(ValueError):
        TransformerConfig(**fields)
