"""Time per collective kind for the comm gauge: calls, bytes and milliseconds since the start, per kind
("all-gather-dp", "reduce-scatter-dp", "all-reduce-tp", …: runtime/parallel/parallel-rank.ts's names).

`bytes` is the op's size as nccl-tests counts it, as runtime/comm records it: the buffer for broadcast and
all-reduce, the unsplit buffer (the all-gather's output, the reduce-scatter's input) for the split ops.

`ms` runs from the call until the collective has completed on this rank (waiting for slower peers included):
- CPU (gloo): the host clock; a blocking call is timed around it, an async one (a Work) until its future's
  completion callback runs.
- CUDA (NCCL): CUDA events on the current stream, one before the call and one after it — for a blocking
  call the current stream already waits for the collective; for an async one the event is recorded in the
  future's callback, whose current stream torch synchronises with the work. The events are read in
  `settle()`, at the step's end where the rank already synchronises for the loss: no host sync per call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

# torch >= 2.10 names the single-tensor collectives *_single and deprecates the *_tensor names (which older
# torch has only).
_all_gather_single: Any = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_reduce_scatter_single: Any = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


class CommTimer:
    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        # kind -> [calls, bytes, ms]
        self.totals: dict[str, list[float]] = {}
        # CUDA: (kind, bytes, start event, end event) not read yet
        self._pending: list[tuple[str, int, Any, Any]] = []
        # Async completions run on the backend's threads.
        self._lock = threading.Lock()

    def add(self, kind: str, nbytes: int, ms: float, calls: int = 1) -> None:
        with self._lock:
            s = self.totals.setdefault(kind, [0, 0, 0.0])
            s[0] += calls
            s[1] += nbytes
            s[2] += ms

    def start(self) -> Any:
        """A mark before the call: an event recorded on the current CUDA stream, or the host clock."""
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            ev.record()
            return ev
        return time.perf_counter()

    def finish(self, mark: Any, kind: str, nbytes: int) -> None:
        """The collective started at `mark` has completed (CPU), or is ordered before the current stream's
        next work (CUDA)."""
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            end.record()
            with self._lock:
                self._pending.append((kind, nbytes, mark, end))
        else:
            self.add(kind, nbytes, (time.perf_counter() - mark) * 1000)

    def call(self, kind: str, nbytes: int, issue: Callable[[], Any]) -> Any:
        """Runs `issue()` (a torch.distributed call) timed; returns what it returns. An async call's Work is
        returned untouched, with the timing attached to its future."""
        mark = self.start()
        work = issue()
        if isinstance(work, dist.Work):

            def done(f: torch.futures.Future[Any]) -> None:
                self.finish(mark, kind, nbytes)

            work.get_future().then(done)
        else:
            self.finish(mark, kind, nbytes)
        return work

    def settle(self) -> None:
        """Adds the CUDA calls whose events have completed (call after the step's synchronisation; a call
        still running stays for the next settle)."""
        with self._lock:
            pending, self._pending = self._pending, []
        left = []
        for kind, nbytes, start, end in pending:
            if end.query():
                self.add(kind, nbytes, float(start.elapsed_time(end)))
            else:
                left.append((kind, nbytes, start, end))
        with self._lock:
            self._pending[:0] = left

    def stats(self) -> list[dict[str, Any]]:
        """The comm message's `collectives`: totals per kind since the start."""
        with self._lock:
            items = sorted((k, list(v)) for k, v in self.totals.items())
        return [{"kind": k, "calls": int(v[0]), "bytes": int(v[1]), "ms": round(float(v[2]), 3)} for k, v in items]


class TimedAllGather:
    """FSDP2's all-gather (`FSDPModule.set_custom_all_gather`), timed as "all-gather-<group>". The same
    allocation and call as FSDP2's default (a plain torch.empty; all_gather_single)."""

    def __init__(self, timer: CommTimer, kind: str) -> None:
        self.timer, self.kind = timer, kind

    def allocate(self, size: Any, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        return torch.empty(*size, dtype=dtype, device=device)

    def __call__(
        self, output_tensor: torch.Tensor, input_tensor: torch.Tensor, group: Any, async_op: bool = False
    ) -> Any:
        return self.timer.call(
            self.kind,
            output_tensor.numel() * output_tensor.element_size(),
            lambda: _all_gather_single(output_tensor, input_tensor, group=group, async_op=async_op),
        )


class TimedReduceScatter:
    """FSDP2's reduce-scatter (`FSDPModule.set_custom_reduce_scatter`), timed as "reduce-scatter-<group>"."""

    def __init__(self, timer: CommTimer, kind: str) -> None:
        self.timer, self.kind = timer, kind

    def allocate(self, size: Any, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        return torch.empty(*size, dtype=dtype, device=device)

    def __call__(
        self, output_tensor: torch.Tensor, input_tensor: torch.Tensor, group: Any, op: Any, async_op: bool = False
    ) -> Any:
        return self.timer.call(
            self.kind,
            input_tensor.numel() * input_tensor.element_size(),
            lambda: _reduce_scatter_single(output_tensor, input_tensor, op=op, group=group, async_op=async_op),
        )


def time_fsdp_collectives(module: Any, timer: CommTimer, group: str) -> tuple[bool, bool]:
    """Routes an FSDP2 module's all-gather and reduce-scatter through the timed copies above, through
    FSDPModule's public set_custom_all_gather / set_custom_reduce_scatter (recent torch). Returns which of
    the two are timed: where this torch lacks a setter or refuses the object, FSDP2 keeps its own comm and the
    caller counts that kind from the sizes with ms unknown (0). The objects follow FSDP2's documented comm
    interface (allocate + __call__) without subclassing its ABCs, which live in a private module."""
    timed = []
    for name, comm in (
        ("set_custom_all_gather", TimedAllGather(timer, f"all-gather-{group}")),
        ("set_custom_reduce_scatter", TimedReduceScatter(timer, f"reduce-scatter-{group}")),
    ):
        setter: Any = getattr(module, name, None)
        ok = False
        if callable(setter):
            try:
                setter(comm)
                ok = True
            except (TypeError, ValueError, AssertionError):
                pass
        timed.append(ok)
    return timed[0], timed[1]
