"""The model against HuggingFace transformers (tiny random configs, nothing downloaded): the same weights give
the same loss, and the torch engine's checkpoints — written from any layout — load in transformers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from engines import EXAMPLE, llama_shaped, torch_train, with_layout

from scalelm.model import CausalLM, ModelError, model_shape

transformers = pytest.importorskip("transformers")

GPT2 = dict(
    layers=2,
    hidden=32,
    heads=4,
    kvHeads=4,
    ffnHidden=128,
    vocab=100,
    seqLen=16,
    activation="gelu",
    norm="layernorm",
    tiedEmbeddings=True,
    bias=True,
    positionEmbedding="learned",
)
LLAMA = dict(
    layers=2,
    hidden=32,
    heads=4,
    kvHeads=2,
    ffnHidden=64,
    vocab=100,
    seqLen=16,
    activation="swiglu",
    norm="rmsnorm",
    tiedEmbeddings=False,
    bias=False,
    positionEmbedding="rope",
)


def hf_loss(hf: Any, tokens: torch.Tensor, targets: torch.Tensor) -> float:
    hf.eval()
    with torch.no_grad():
        logits = hf(tokens).logits
    return float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)))


def our_loss(net: CausalLM, tokens: torch.Tensor, targets: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        return float(net(tokens, targets))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_same_weights_same_loss_as_transformers(family: str) -> None:
    m = GPT2 if family == "gpt2" else LLAMA
    net = CausalLM(model_shape(m))
    net.init_weights(7)
    noise = torch.Generator().manual_seed(11)
    with torch.no_grad():  # biases and norms away from their zero/one initialisation, so they matter
        for p in net.parameters():
            if p.dim() == 1:
                p.add_(torch.randn(p.shape, generator=noise) * 0.1)
    state = {k: v.detach().clone() for k, v in net.named_parameters()}
    if family == "gpt2":
        cfg = transformers.GPT2Config(
            vocab_size=100,
            n_positions=16,
            n_embd=32,
            n_layer=2,
            n_head=4,
            activation_function="gelu_new",
            resid_pdrop=0,
            embd_pdrop=0,
            attn_pdrop=0,
            layer_norm_epsilon=1e-5,
        )
        hf = transformers.GPT2LMHeadModel(cfg)
        res = hf.transformer.load_state_dict(state, strict=False)
        assert not res.unexpected_keys and all(k.endswith("attn.bias") or "masked_bias" in k for k in res.missing_keys)
    else:
        cfg = transformers.LlamaConfig(
            vocab_size=100,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=16,
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
            rope_theta=10000.0,
        )
        hf = transformers.LlamaForCausalLM(cfg)
        hf.load_state_dict(state, strict=True)
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, 100, (3, 16), generator=g)
    targets = torch.randint(0, 100, (3, 16), generator=g)
    ours, theirs = our_loss(net, tokens, targets), hf_loss(hf, tokens, targets)
    assert abs(ours - theirs) <= 1e-5 * abs(theirs)
    # A different set of weights gives a different loss (the comparison can fail). Every weight is
    # perturbed: scaling the embedding alone is almost normalised away under RMSNorm.
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=noise) * 0.5)
    assert abs(our_loss(net, tokens, targets) - theirs) > 1e-3


def test_unsupported_mix_is_refused_with_every_reason() -> None:
    with pytest.raises(ModelError, match=r"model\.norm='rmsnorm'.*model\.tiedEmbeddings=False"):
        model_shape({**GPT2, "norm": "rmsnorm", "tiedEmbeddings": False})


@pytest.mark.parametrize(
    "family,layout",
    [("gpt2", dict(dp=1, tp=2, zero=0)), ("llama", dict(dp=2, tp=2, zero=3))],
    ids=["gpt2-tp2", "llama-dp2-tp2-zero3"],
)
def test_checkpoint_loads_in_transformers(
    family: str, layout: dict[str, int], small_config: dict[str, Any], tmp_path: Path
) -> None:
    config = with_layout(small_config if family == "gpt2" else llama_shaped(small_config), **layout)
    config["train"]["steps"] = 3
    run = tmp_path / "run"
    torch_train(tmp_path, config, run_dir=run)
    folder = run / "checkpoints" / "step-000003"
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["folder"] == "step-000003"
    cls = transformers.GPT2LMHeadModel if family == "gpt2" else transformers.LlamaForCausalLM
    hf = cls.from_pretrained(str(folder))
    net = CausalLM(model_shape(config["model"]))
    from scalelm.checkpoint import init_weights
    from scalelm.model import param_specs

    net.load_full(init_weights(str(folder), param_specs(net.s)))
    tokens = torch.tensor([list((EXAMPLE.parent / "data" / "tiny.txt").read_bytes()[:64])]).reshape(2, 32)
    targets = torch.roll(tokens, -1, 1)
    ours, theirs = our_loss(net, tokens, targets), hf_loss(hf, tokens, targets)
    assert abs(ours - theirs) <= 1e-5 * abs(theirs)
    # trained: not the initial weights any more
    fresh = CausalLM(model_shape(config["model"]))
    fresh.init_weights(config["train"]["seed"])
    assert abs(our_loss(fresh, tokens, targets) - ours) > 1e-4
