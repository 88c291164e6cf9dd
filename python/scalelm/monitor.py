"""Monitor any PyTorch training script (issue 15): two lines, the same messages as the torch engine's ranks.

    monitor = scalelm.Monitor(model, optimizer)
    ...
    monitor.step(loss=loss, tokens=tokens_this_step)   # once per optimizer step, on every rank

Rank and world come from torch.distributed (else 0 and 1). With a ScaleLM coordinator listening
(SCALELM_CHANNEL, as `scalelm launch` sets it) each rank reports over the rank channel (engine "monitor");
otherwise rank 0 writes the records into a run folder (SCALELM_RUN_DIR, else ./runs/<name>-<UTC time>) that
`scalelm serve` opens later. On its first step rank 0 also reports what the planner needs (scalelm/shape.py):
the HuggingFace model's shape, the layout it can see, and the run's length (total_steps) for the
coordinator's out-of-memory forecast. Memory per category uses the torch engine's accounting; on CPU activations are
counted by saved-tensor hooks around the model's forward on the steps scalelm.memory.SamplingPolicy picks (step
1, a new input shape, then as the measured cost allows: under 0.25% of step time), so the cost stays under 1%.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from types import TracebackType
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .channel import Channel, node_ref
from .memory import ModelTensors, SamplingPolicy, SavedTensorCounter, categories, grad_l2_norm
from .shape import LAYOUT_KEYS, detect_layout, forward_inputs, hf_shape, input_shape


class Monitor:
    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        name: str | None = None,
        run_dir: str | None = None,
        total_steps: int | None = None,
        micro_batch: int | None = None,
        seq_len: int | None = None,
        capacity: int | None = None,
        layout: dict[str, Any] | None = None,
    ) -> None:
        """`total_steps`: the run's optimizer steps (for the out-of-memory forecast); `micro_batch`, `seq_len`:
        when the first forward's inputs do not show them; `capacity`: the device's bytes where the allocator
        has none to say (CPU); `layout`: what an integration knows better than detection (scalelm/shape.py
        LAYOUT_KEYS: strategy, zero, tp, microBatch, seqLen, gradAccum, precision)."""
        self.model = model
        self.optimizer = optimizer
        self.total_steps = total_steps if total_steps and total_steps > 0 else None
        self.capacity = capacity
        self._given: dict[str, Any] = {k: v for k, v in (layout or {}).items() if k in LAYOUT_KEYS and v is not None}
        if micro_batch:
            self._given["microBatch"] = micro_batch
        if seq_len:
            self._given["seqLen"] = seq_len
        self._seen: dict[str, Any] = {}
        self._shape_sent = False
        if dist.is_available() and dist.is_initialized():
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
        else:
            self.rank, self.world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.name = (
            name
            or os.path.splitext(os.path.basename(os.environ.get("SCALELM_SCRIPT", "") or "monitor"))[0]
            or "monitor"
        )
        self.channel = Channel.from_env(self.rank, self.world, local_rank, engine="monitor")
        self.node = node_ref()
        self.file: Any = None
        self.run_dir: str | None = None
        if self.channel is None and self.rank == 0:
            self.run_dir = (
                run_dir
                or os.environ.get("SCALELM_RUN_DIR")
                or os.path.join(
                    "runs",
                    f"{re.sub(r'[^A-Za-z0-9._-]+', '-', self.name)}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}",
                )
            )
            os.makedirs(self.run_dir, exist_ok=True)
            self.file = open(os.path.join(self.run_dir, "metrics.jsonl"), "a", encoding="utf-8")  # noqa: SIM115
        self._started = int(time.time() * 1000)
        self.steps = 0
        self._n = 0  # steps reported by this Monitor
        self._announced = 0  # the last step named by a progress line
        self.tokens = 0
        self._last = time.perf_counter()
        self._activations = 0
        self._counter: SavedTensorCounter | None = None
        self._ctx: Any = None
        # Sampled activation counting (CPU): the policy sees the Monitor's own step count (1, 2, …), whatever
        # step numbers the caller reports. _counted: this step's largest count over its hooked forwards.
        self.sampling = SamplingPolicy()
        self._shape: tuple[int, ...] | None = None
        self._by_shape: dict[tuple[int, ...] | None, int] = {}
        self._counted: int | None = None
        self._tensors = ModelTensors(model)
        self._hooks = [
            model.register_forward_pre_hook(self._pre, with_kwargs=True),
            model.register_forward_hook(self._post),
        ]
        self._inputs_seen = False
        self._first = model.register_forward_pre_hook(self._first_forward, with_kwargs=True)
        self.device = next((p.device for p in model.parameters()), torch.device("cpu"))
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def _first_forward(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        """Micro-batch, sequence length and autocast from the first forward's inputs (then the hook goes)."""
        self.observe_inputs(tuple(args), kwargs or {})

    def observe_inputs(self, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None) -> None:
        """The first micro-batch's inputs (the model's forward, or an integration's batch): micro-batch, sequence
        length, autocast. Later calls change nothing."""
        if self._inputs_seen:
            return
        self._inputs_seen = True
        self._seen = forward_inputs(args, kwargs or {}, self.device)
        self._first.remove()

    def _layout(self) -> dict[str, Any]:
        out = {**detect_layout(self.model, self.optimizer, self.world), **self._seen, **self._given}
        if "precision" not in out and out.get("paramDtype") == "fp32":
            out["precision"] = "fp32"  # fp32 parameters and no autocast seen in the first forward
        return out

    def _report(self) -> dict[str, Any]:
        """What the planner needs (once, from rank 0): the model's shape, the layout, the run's length."""
        shape = hf_shape(self.model)
        out: dict[str, Any] = {"layout": self._layout()}
        if shape is not None:
            out["model"] = shape
        if self.total_steps is not None:
            out["totalSteps"] = self.total_steps
        return out

    def _hello(self) -> dict[str, Any]:
        """The run folder's hello (no coordinator): the config names the model's shape and layout."""
        report = self._report()
        config: dict[str, Any] = {"name": self.name, "monitor": report}
        if "model" in report:
            config["huggingface"] = report["model"]
        run_id = re.sub(r"[^A-Za-z0-9._:@+-]+", "-", os.path.basename(os.path.abspath(self.run_dir or "run"))) or "run"
        return {
            "type": "hello",
            "protocol": 1,
            "runId": run_id,
            "name": self.name,
            "startedAt": self._started,
            "world": self.world,
            "config": config,
        }

    def _pre(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        self.forward_started(input_shape(tuple(args), kwargs or {}))

    def _post(self, module: nn.Module, args: Any, output: Any) -> None:
        self.forward_ended()

    def step_started(self, step: int | None = None) -> None:
        """Step `step` (default: the one after the last reported) begins. Over the rank channel that is the
        `progress` line, sent as the step starts: if this rank dies, the coordinator names the step it died in.
        The first training forward after a report calls it; integrations that know the step number call it first."""
        n = step if step is not None else self.steps + 1
        if self.channel is not None and n != self._announced:
            self._announced = n
            self.channel.send({"k": "progress", "rank": self.rank, "step": n})

    def forward_started(self, shape: tuple[int, ...] | None = None) -> None:
        """The forward of a micro-batch begins (the model's own hook; integrations whose framework does not call
        the model's forward, as Lightning's training_step, call it; `shape`: the input's (batch, seq) where
        known): announces the step when this is its first training forward, and on the steps the sampling
        policy picks (CPU, training forwards) counts what autograd saves, from here to forward_ended()."""
        if not self.model.training:
            return
        if self._announced <= self.steps:
            self.step_started()
        if shape is not None:
            self._shape = shape
        if (
            self.device.type != "cuda"
            and self._ctx is None
            and torch.is_grad_enabled()
            and self.sampling.due(self._n + 1, shape)
        ):
            self._counter = SavedTensorCounter()
            self._ctx = self._counter.counting()
            self._ctx.__enter__()

    def forward_ended(self) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self._ctx = None
            assert self._counter is not None
            self._counted = max(self._counted or 0, self._counter.bytes)

    def _emit(self, m: dict[str, Any]) -> None:
        if self.channel is not None:
            self.channel.msg(self.rank, m)
        elif self.file is not None:
            self.file.write(json.dumps(m, separators=(",", ":")) + "\n")
            self.file.flush()

    def step(
        self,
        loss: float | torch.Tensor,
        tokens: int | None = None,
        lr: float | None = None,
        grad_norm: float | None = None,
        step: int | None = None,
    ) -> None:
        """Reports one optimizer step (call it on every rank, after optimizer.step(), before zero_grad()).
        `step`: the run's step number when the caller counts them (a resumed run, a Trainer); else 1, 2, …"""
        self.steps = step if step is not None else self.steps + 1
        if not self._shape_sent and self.rank == 0:
            self._shape_sent = True
            if self.channel is not None:
                self.channel.send({"k": "shape", "rank": 0, **self._report()})
            else:
                self._emit(self._hello())
        now = time.perf_counter()
        step_ms = (now - self._last) * 1000
        self._last = now
        self._n += 1
        if self._counted is not None:  # a sampled step: its count, remembered for its input shape
            self._activations = self._by_shape[self._shape] = self._counted
            self._counted = None
        else:  # the count of the last sampled step of this shape (of any shape before one was counted)
            self._activations = self._by_shape.get(self._shape, self._activations)
        if self.device.type != "cuda":
            self.sampling.step_done(self._n, step_ms / 1000)
        if lr is None and self.optimizer is not None and self.optimizer.param_groups:
            lr = float(self.optimizer.param_groups[0].get("lr", 0.0))
        if self._n % 100 == 0:  # modules added to the model after the Monitor was made show within 100 steps
            self._tensors.refresh()
        params = self._tensors.params()  # read once per step, shared below
        if grad_norm is None:
            # This rank's view (its gradient shards), where the gradients are still there.
            grad_norm = grad_l2_norm(params)
        cats, peak, cap = categories(
            self.model, self.optimizer, self._activations, self.device, tensors=self._tensors, params=params
        )
        if cap is None and self.capacity:
            cap = self.capacity
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        if tokens:
            self.tokens += tokens
        t = int(time.time() * 1000)

        def metric(v: float) -> float | str:
            return v if math.isfinite(v) else ("NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity"))

        if self.rank == 0:
            self._emit(
                {
                    "type": "step",
                    "step": self.steps,
                    "loss": metric(float(loss.detach() if isinstance(loss, torch.Tensor) else loss)),
                    "lr": metric(float(lr or 0.0)),
                    "gradNorm": metric(grad_norm),
                    "tokensPerSec": (tokens or 0) / max(step_ms, 1e-6) * 1000,
                    "stepMs": step_ms,
                    "memory": {**cats, "peak": peak},
                    "tokens": self.tokens,
                    "t": t,
                }
            )
        device = f"cuda:{self.device.index}" if self.device.type == "cuda" else f"cpu:{self.rank}"
        self._emit(
            {
                "type": "memory",
                "rank": self.rank,
                "t": t,
                "step": self.steps,
                "categories": cats,
                "stepPeak": peak,
                "capacity": int(cap or 0),
                "device": device,
                **({"node": self.node} if self.node else {}),
            }
        )

    def close(self, reason: str = "completed") -> None:
        for h in [*self._hooks, self._first]:
            h.remove()
        if self.channel is not None:
            self.channel.send({"k": "done", "rank": self.rank, "step": self.steps, "reason": reason})
            self.channel.close()
            self.channel = None
        if self.file is not None:
            if not self._shape_sent:  # no step reported: the folder still opens as a run
                self._shape_sent = True
                self._emit(self._hello())
            self.file.close()
            self.file = None

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close("completed" if et is None else "stopped")
