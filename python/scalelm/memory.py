"""Memory per category on one rank, from the rank's own tensors and the allocator.

params, grads and optimizer are summed over the rank's own tensors (DTensor/FSDP: the local shard);
activations are what autograd saved for backward: on CUDA the step's allocator peak minus the rest, on CPU the
unique storages passed to saved-tensor hooks during one micro-batch's forward (sampled: hooks only on
sampled steps, so the cost stays far below 1% of step time).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


def local(t: torch.Tensor) -> torch.Tensor:
    """The rank's own part of a tensor (a DTensor's local shard)."""
    to_local = getattr(t, "to_local", None)
    out = to_local() if callable(to_local) else t
    assert isinstance(out, torch.Tensor)
    return out


def nbytes(ts: Iterable[torch.Tensor | None]) -> int:
    return sum(local(t).numel() * t.element_size() for t in ts if t is not None)


def optimizer_bytes(opt: torch.optim.Optimizer | None) -> int:
    if opt is None:
        return 0
    return sum(
        nbytes(v for v in st.values() if isinstance(v, torch.Tensor) and v.dim() > 0) for st in opt.state.values()
    )


class SavedTensorCounter:
    """Counts the unique storages autograd saves for backward that are not parameters (activations)."""

    def __init__(self) -> None:
        self.bytes = 0
        self._seen: set[int] = set()

    @contextmanager
    def counting(self) -> Iterator[None]:
        def pack(t: torch.Tensor) -> torch.Tensor:
            base = t._base if t._base is not None else t
            if not (isinstance(base, nn.Parameter) or (base.is_leaf and base.requires_grad)):
                st = t.untyped_storage()
                key = st.data_ptr()
                if key not in self._seen:
                    self._seen.add(key)
                    self.bytes += st.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield


def gpu_used_bytes(index: int) -> int | None:
    """The device's used memory as nvidia-smi shows it (CUDA context and other libraries included)."""
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(index)
        return int(pynvml.nvmlDeviceGetMemoryInfo(h).used)
    except Exception:
        pass
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run(
            [smi, f"--id={index}", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
        return int(float(out.strip().splitlines()[0]) * 1024 * 1024)
    except (subprocess.SubprocessError, ValueError, IndexError, OSError):
        return None


# The shared memory vocabulary (common/memory-categories.ts; test/unit/memory-categories.test.ts keeps the two equal).
CATEGORIES = ("params", "grads", "optimizer", "activations", "buffers", "other")


def categories(
    model: nn.Module, opt: torch.optim.Optimizer | None, activations: int, device: torch.device, extra_buffers: int = 0
) -> tuple[dict[str, int], int, Any]:
    """(categories, stepPeak, capacity) for the step just finished."""
    params = nbytes(model.parameters())
    grads = nbytes(p.grad for p in model.parameters())
    optim = optimizer_bytes(opt)
    buffers = nbytes(model.buffers()) + extra_buffers
    cats = {
        "params": params,
        "grads": grads,
        "optimizer": optim,
        "activations": activations,
        "buffers": buffers,
        "other": 0,
    }
    if device.type == "cuda":
        peak = int(torch.cuda.max_memory_allocated(device))
        cats["activations"] = max(0, peak - params - grads - optim - buffers)
        reserved = int(torch.cuda.memory_reserved(device))
        cats["other"] = max(0, reserved - peak)
        cap = int(torch.cuda.get_device_properties(device).total_memory)
        return cats, peak, cap
    return cats, sum(cats.values()), None
