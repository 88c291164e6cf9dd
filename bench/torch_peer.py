"""The plain-PyTorch peer of the torch engine for `npm run gpu-check` (scripts/gpu-check.mjs).

The same model shape, batch and precision policy as the engine's run (fp32 parameters, bf16 autocast on CUDA,
AdamW), written the way a user would: HuggingFace `transformers` GPT2LMHeadModel / LlamaForCausalLM built from
a config (random init, no download), SDPA attention, `torch.optim.AdamW(fused=True)` on CUDA. Random tokens (the
data does not change the speed). Prints one `RESULT {json}` line: tokens/s (median step after warm-up), the
step time, peak allocated memory, and the measured bf16 GEMM throughput of the device (a practical peak).

Needs only torch and transformers (both on the GPU machine).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch


def build(shape: dict[str, Any], device: torch.device) -> torch.nn.Module:
    import transformers

    common = dict(vocab_size=shape["vocab"], hidden_size=shape["hidden"], num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"])
    if shape.get("activation", "gelu") == "swiglu":
        cfg = transformers.LlamaConfig(
            **common,
            num_key_value_heads=shape.get("kvHeads", shape["heads"]),
            intermediate_size=shape["ffnHidden"],
            max_position_embeddings=shape["seqLen"],
            tie_word_embeddings=bool(shape.get("tiedEmbeddings", False)),
            attention_bias=False,
            mlp_bias=False,
        )
        cfg._attn_implementation = "sdpa"
        model: torch.nn.Module = transformers.LlamaForCausalLM(cfg)
    else:
        cfg = transformers.GPT2Config(
            vocab_size=shape["vocab"], n_embd=shape["hidden"], n_layer=shape["layers"], n_head=shape["heads"],
            n_inner=shape["ffnHidden"], n_positions=shape["seqLen"], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        )
        cfg._attn_implementation = "sdpa"
        model = transformers.GPT2LMHeadModel(cfg)
    return model.to(device)


def gemm_tflops(device: torch.device) -> float | None:
    """bf16 GEMM throughput actually reachable on this device (TFLOP/s); None on CPU."""
    if device.type != "cuda":
        return None
    n = 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    reps = 20
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", required=True, help="model shape as JSON (the ScaleLM config's resolved model)")
    ap.add_argument("--micro-batch", type=int, required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--lr", type=float, default=3e-4)
    a = ap.parse_args()
    shape = json.loads(a.shape)
    device = torch.device(a.device)
    torch.manual_seed(0)
    model = build(shape, device)
    params = sum(p.numel() for p in model.parameters())
    cuda = device.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1, **({"fused": True} if cuda else {}))
    B, T, V = a.micro_batch, shape["seqLen"], shape["vocab"]
    times: list[float] = []
    losses: list[float] = []
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for _ in range(a.steps):
        x = torch.randint(0, V, (B, T), device=device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, torch.bfloat16, enabled=cuda):
            out = model(input_ids=x, labels=x)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.item())  # synchronises, like the engine's per-step loss
        times.append(time.perf_counter() - t0)
    step_s = statistics.median(times[a.warmup:] or times)
    result = {
        "params": params,
        "tokensPerSec": B * T / step_s,
        "stepMs": step_s * 1000,
        "peakAllocated": torch.cuda.max_memory_allocated() if cuda else None,
        "reserved": torch.cuda.memory_reserved() if cuda else None,
        "lastLoss": losses[-1],
        "gemmTflops": gemm_tflops(device),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
