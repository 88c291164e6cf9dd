"""Memory per category on one rank, from the rank's own tensors and the allocator.

params, grads and optimizer are summed over the rank's own tensors (DTensor/FSDP: the local shard);
activations are what autograd saved for backward: on CUDA the step's allocator peak minus the rest, on CPU the
unique storages passed to saved-tensor hooks during one micro-batch's forward, on the steps that
`SamplingPolicy` picks so that the hooks' measured cost stays under a fixed fraction of step time.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
from collections import deque
from collections.abc import Hashable, Iterable, Iterator
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


_PLAIN = (torch.Tensor, nn.Parameter)


def nbytes(ts: Iterable[torch.Tensor | None]) -> int:
    # Plain tensors need no local(): it is called for every tensor every step.
    return sum((t if type(t) in _PLAIN else local(t)).nbytes for t in ts if t is not None)


class ModelTensors:
    """The model's parameters and buffers, read each time from its module list. The list is taken once (and
    again on refresh()): walking the module tree is most of what counting costs per step, and training adds no
    modules; each module's own parameters and buffers are read afresh, so FSDP's swaps and a growing buffer show."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.refresh()

    def refresh(self) -> None:
        self.modules = list(self.model.modules())

    def _unique(self, attr: str) -> list[torch.Tensor]:
        seen: dict[int, torch.Tensor] = {}  # shared (tied) tensors once, as model.parameters() does
        for m in self.modules:
            for t in getattr(m, attr).values():
                if t is not None:
                    seen.setdefault(id(t), t)
        return list(seen.values())

    def params(self) -> list[torch.Tensor]:
        return self._unique("_parameters")

    def buffers(self) -> list[torch.Tensor]:
        return self._unique("_buffers")


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


class SamplingPolicy:
    """Which steps run a costly measurement (saved-tensor hooks on CPU, nvidia-smi on CUDA), so that its
    amortised cost stays under `budget` (a fraction) of step time by construction, whatever the model.

    A credit: every step earns `budget` times its time, every sample spends its cost, and a sample waits until
    the credit is back to zero (so over a run the samples cost at most `budget` of its time, plus one sample
    and the forced ones below).
    A sample's cost is given (`extra`, where the caller times the measurement alone) or derived: the sampled
    step's time minus the median of the recent plain steps (the whole step while there are fewer than three).
    Step 1 (the first step seen) always samples; the second sample comes `min_every` steps later (a probe that
    measures the cost); then a sample is due when `min_every` steps have passed and the credit allows. A new
    input shape (activations depend on batch and sequence length) samples as soon as the credit allows, a
    shape measured before does not; and at most `max_every` steps pass without a sample, so a long run's
    figure stays fresh (then the cost is at most max(budget, one sample / max_every)).
    """

    def __init__(self, budget: float = 0.0025, min_every: int = 10, max_every: int = 1000) -> None:
        if not (0 < budget < 1 and 1 <= min_every <= max_every):
            raise ValueError(
                "SamplingPolicy: need 0 < budget < 1 and 1 <= min_every <= max_every, got "
                f"budget={budget}, min_every={min_every}, max_every={max_every}"
            )
        self.budget, self.min_every, self.max_every = budget, min_every, max_every
        self.credit = 0.0  # seconds of measurement earned and not spent
        self.cost: float | None = None  # the last sample's measured cost (s)
        self.spent = 0.0  # seconds, all samples
        self.last: int | None = None  # the last sampled step
        self.sampled = 0  # steps sampled
        self.shapes: set[Hashable] = set()  # input shapes measured so far
        self._plain: deque[float] = deque(maxlen=16)  # recent unsampled step times (s)
        self._step: int | None = None  # the step decided last, and whether it samples
        self._sampling = False
        self._first_done = False

    def due(self, step: int, shape: Hashable = None) -> bool:
        """Whether step `step` (input `shape`, None when unknown) samples. Cheap; asking again for the same step
        (each micro-batch's forward) keeps a yes, and turns a no into a yes for a new shape the credit allows."""
        if step == self._step and (self._sampling or shape is None or shape in self.shapes):
            return self._sampling
        self._step = step
        if self.last is None or step - self.last >= self.max_every:
            self._sampling = True
        elif shape is not None and shape not in self.shapes:
            self._sampling = self.credit >= 0
        elif self.cost is None:  # the probe
            self._sampling = step - self.last >= self.min_every
        else:
            self._sampling = step - self.last >= self.min_every and self.credit >= 0
        if self._sampling and shape is not None:
            self.shapes.add(shape)
        return self._sampling

    def step_done(self, step: int, seconds: float, extra: float | None = None) -> None:
        """Step `step` took `seconds` (its measurement included, when derived; `extra`: the measurement's own
        time where the caller timed it alone)."""
        self.credit = min(self.credit + self.budget * seconds, self.budget * seconds * self.max_every)
        if step == self._step and self._sampling:
            if extra is None and self._first_done:  # the run's first step carries the warm-up: not charged
                extra = seconds - statistics.median(self._plain) if len(self._plain) >= 3 else seconds
            if extra is not None:
                self.cost = max(0.0, extra)
                self.credit -= self.cost
                self.spent += self.cost
            self.last = step
            self.sampled += 1
        elif self._first_done:
            self._plain.append(seconds)
        self._first_done = True
        self._step = None


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


def grad_l2_norm(params: Iterable[torch.Tensor]) -> float:
    """The L2 norm over the gradients of `params` (local shards): per-tensor norms, no squared copy of any
    gradient, one sync for the total. NaN when there is no gradient."""
    norms = [
        torch.linalg.vector_norm(local(p.grad).detach(), dtype=torch.float32) for p in params if p.grad is not None
    ]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else float("nan")


def categories(
    model: nn.Module,
    opt: torch.optim.Optimizer | None,
    activations: int,
    device: torch.device,
    extra_buffers: int = 0,
    tensors: ModelTensors | None = None,
    params: list[torch.Tensor] | None = None,
) -> tuple[dict[str, int], int, Any]:
    """(categories, stepPeak, capacity) for the step just finished. `tensors`: the model's ModelTensors, kept by
    the caller across steps; `params`: its params() where the caller has read them already this step."""
    mt = ModelTensors(model) if tensors is None else tensors
    plist = mt.params() if params is None else params
    params_b = nbytes(plist)
    grads = nbytes(p.grad for p in plist)
    optim = optimizer_bytes(opt)
    buffers = nbytes(mt.buffers()) + extra_buffers
    cats = {
        "params": params_b,
        "grads": grads,
        "optimizer": optim,
        "activations": activations,
        "buffers": buffers,
        "other": 0,
    }
    if device.type == "cuda":
        peak = int(torch.cuda.max_memory_allocated(device))
        cats["activations"] = max(0, peak - params_b - grads - optim - buffers)
        reserved = int(torch.cuda.memory_reserved(device))
        cats["other"] = max(0, reserved - peak)
        cap = int(torch.cuda.get_device_properties(device).total_memory)
        return cats, peak, cap
    return cats, sum(cats.values()), None
