"""The torch engine's rank: `torchrun … -m scalelm.train --args FILE` (docs/rank-channel.md).

One process per device on a (dp, tp) mesh: Megatron tensor parallelism inside the model (scalelm.tp), data
parallelism as DDP (zero 0), DDP with the optimizer state sharded over the data-parallel group (zero 1), or
FSDP2 fully_shard (zero 2: reshard_after_forward=False, zero 3: True). The data, initial weights, AdamW,
clipping and schedule are the local engine's, so both engines train the same run step for step.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import sys
import time
import traceback
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from . import checkpoint as ckpt
from .channel import Channel, node_ref
from .commtime import CommTimer, time_fsdp_collectives
from .data import BatchSampler, load_tokens
from .memory import CATEGORIES, ModelTensors, SamplingPolicy, SavedTensorCounter, categories, gpu_used_bytes, local
from .model import CausalLM, ModelError, ParamSpec, Shape, model_shape, param_specs
from .rng import mix
from .tp import TpGroup, is_sharded, join_shards, slice_shard

# Benchmarking only (bench/torch_overhead.py): SCALELM_MEMORY_SAMPLING=0 switches the per-rank memory
# measurement off (no saved-tensor hooks, no allocator or nvidia-smi reads; steps report zero bytes and no
# `memory` messages are sent), so its cost can be measured against the same loop without it. Read once.
MEMORY_SAMPLING = os.environ.get("SCALELM_MEMORY_SAMPLING", "1") != "0"


class LayoutError(Exception):
    pass


def layout_issues(config: dict[str, Any], world: int | None, device: str) -> list[str]:
    """Why the torch engine cannot run this config's layout (empty when it can)."""
    p, t, m = config["parallel"], config["train"], config["model"]
    out: list[str] = []
    if p.get("pp", 1) > 1 or p.get("vpp", 1) > 1:
        out.append(f"parallel.pp={p.get('pp')}: the torch engine has no pipeline parallelism yet; set pp to 1")
    if p.get("sequenceParallel"):
        out.append("parallel.sequenceParallel: not supported by the torch engine yet; set it to false")
    if p.get("offloadOptimizer") or p.get("offloadParams"):
        out.append("parallel.offloadOptimizer/offloadParams: the torch engine does not offload; set them to false")
    dp, tp = p["dp"], p["tp"]
    if world is not None and world != dp * tp:
        out.append(f"the layout needs dp·tp = {dp * tp} processes but torchrun started {world}")
    if tp > 1 and (m["heads"] % tp or m["kvHeads"] % tp or m["ffnHidden"] % tp):
        out.append(
            f"parallel.tp={tp} must divide model.heads={m['heads']}, kvHeads={m['kvHeads']} "
            f"and ffnHidden={m['ffnHidden']}"
        )
    if t["globalBatch"] % (t["microBatch"] * dp):
        out.append(f"train.globalBatch={t['globalBatch']} is not a multiple of microBatch·dp = {t['microBatch'] * dp}")
    prec = t.get("precision", "fp32")
    if prec == "fp16-mixed":
        out.append('train.precision="fp16-mixed": the torch engine trains in bf16-mixed or fp32')
    if prec == "bf16-mixed" and device != "cuda":
        out.append('train.precision="bf16-mixed" needs CUDA GPUs; on CPU the torch engine trains in fp32')
    try:
        model_shape(m)
    except ModelError as e:
        out.append(str(e))
    return out


def learning_rate(t: dict[str, Any], step: int) -> float:
    """runtime/train/schedule.ts learningRate: linear warm-up, then cosine/linear/constant to minLr."""
    it = step - 1
    if it < t["warmupSteps"]:
        return float(t["lr"] * (it + 1) / t["warmupSteps"])
    if t["schedule"] == "constant":
        return float(t["lr"])
    span = max(1, t["steps"] - t["warmupSteps"])
    progress = min(1.0, (it - t["warmupSteps"]) / span)
    if t["schedule"] == "linear":
        return float(t["lr"] - (t["lr"] - t["minLr"]) * progress)
    return float(t["minLr"] + 0.5 * (t["lr"] - t["minLr"]) * (1 + math.cos(math.pi * progress)))


class Rank:
    def __init__(self, args: dict[str, Any], channel: Channel | None) -> None:
        self.args = args
        self.channel = channel
        self.config: dict[str, Any] = args["config"]
        cfg, p, t = self.config, self.config["parallel"], self.config["train"]
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.device = torch.device(args.get("device", "cpu"))
        if self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        self.dp, self.tp, self.zero = p["dp"], p["tp"], p["zero"]
        from torch.distributed.device_mesh import init_device_mesh

        self.mesh = init_device_mesh(self.device.type, (self.dp, self.tp), mesh_dim_names=("dp", "tp"))
        self.dp_group = self.mesh.get_group("dp")
        self.tp_index = self.mesh.get_local_rank("tp")
        self.dp_index = self.mesh.get_local_rank("dp")
        # Every collective of the step is timed into this gauge (commtime.py: host clock on gloo, CUDA events
        # read at the step's end on NCCL).
        self.comm = CommTimer(self.device)
        # FSDP2 collective kinds this torch cannot time (_wrap): counted from the sizes, ms unknown (0).
        self.untimed: list[str] = []
        self.tpg = TpGroup(self.tp, self.tp_index, self.mesh.get_group("tp"), self.comm)
        self.shape: Shape = model_shape(cfg["model"])
        self.specs: list[ParamSpec] = param_specs(self.shape)
        self.model = CausalLM(self.shape, self.tpg, t["recompute"]).to(self.device)
        self.base = self.model
        self.data = load_tokens(
            cfg["data"], args.get("baseDir", "."), self.shape.vocab, self.shape.positions, t["seed"], t["evalEvery"] > 0
        )
        self.sampler = BatchSampler(self.data.train, self.shape.positions, t["seed"], "train")
        self.eval_sampler = (
            BatchSampler(self.data.val, self.shape.positions, t["seed"], "val") if t["evalEvery"] > 0 else None
        )
        self.accumulation = t["globalBatch"] // (t["microBatch"] * self.dp)
        self.autocast = t.get("precision") == "bf16-mixed"
        self.activations = 0
        self.measure_memory = MEMORY_SAMPLING
        # The costly reads, on the steps the policy picks (scalelm/memory.py): saved-tensor hooks on CPU (the
        # input shape is fixed by the config), nvidia-smi on CUDA.
        self.hook_sampling = SamplingPolicy()
        self.device_sampling = SamplingPolicy()
        self.last_step_ms = 0.0
        self.tensors = ModelTensors(self.model)  # the engine's model gains no modules (FSDP2 shards in place)
        self.step = int(args.get("startStep", 0))
        self.optimizer_steps = self.step
        start = args.get("start", {"kind": "fresh"})
        opt_state: dict[str, list[torch.Tensor]] | None = None
        with torch.no_grad():
            if start["kind"] == "resume":
                values, opt_state, state = ckpt.read_full(
                    ckpt.resolve_resume(start["folder"]), self.specs, self.shape, t["optimizer"]
                )
                self.step = int(state.get("step", self.step))
                self.optimizer_steps = int(state.get("optimizer", {}).get("steps", self.step))
                self.model.load_full({k: v.to(self.device) for k, v in values.items()})
            elif start["kind"] == "init":
                self.model.load_full(
                    {k: v.to(self.device) for k, v in ckpt.init_weights(start["folder"], self.specs).items()}
                )
            else:
                self.model.init_weights(t["seed"])
        self._wrap(p)
        self._make_optimizer(t)
        if opt_state is not None:
            self._load_optimizer_state(opt_state)

    # ---- setup ------------------------------------------------------------------------------------------

    def _wrap(self, p: dict[str, Any]) -> None:
        if self.zero >= 2:
            from torch.distributed.fsdp import fully_shard

            dp_mesh = self.mesh["dp"]
            reshard = self.zero == 3
            units: list[nn.Module] = [*self.model.blocks(), self.model]
            for u in units:
                fully_shard(u, mesh=dp_mesh, reshard_after_forward=reshard)
            for u in units:
                ag, rs = time_fsdp_collectives(u, self.comm, "dp")
                if not ag and "all-gather-dp" not in self.untimed:
                    self.untimed.append("all-gather-dp")
                if not rs and "reduce-scatter-dp" not in self.untimed:
                    self.untimed.append("reduce-scatter-dp")
            self.wrapped: nn.Module = self.model
        elif self.dp > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ddp = DDP(
                self.model,
                process_group=self.dp_group,
                bucket_cap_mb=float(p.get("bucketMB", 25)),
                gradient_as_bucket_view=True,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
            )
            ddp.register_comm_hook(self, _timed_allreduce_hook)
            self.wrapped = ddp
        else:
            self.wrapped = self.model

    def _make_optimizer(self, t: dict[str, Any]) -> None:
        named = dict(self.model.named_parameters())
        decay = {s.name for s in self.specs if s.decay}
        self.owner: dict[str, int] = {}
        if self.zero == 1 and self.dp > 1:
            # ZeRO-1: each data-parallel rank keeps the optimizer state of (and updates) a share of the
            # parameters, balanced by size; the updated values are broadcast from their owner.
            load = [0] * self.dp
            for s in sorted(self.specs, key=lambda s: -named[s.name].numel()):
                k = min(range(self.dp), key=lambda i: load[i])
                self.owner[s.name] = k
                load[k] += named[s.name].numel()
        mine = [s.name for s in self.specs if self.owner.get(s.name, self.dp_index) == self.dp_index]
        groups = [
            {"params": [named[n] for n in mine if n in decay], "weight_decay": t["weightDecay"]},
            {"params": [named[n] for n in mine if n not in decay], "weight_decay": 0.0},
        ]
        kind = t["optimizer"]
        self.opt: torch.optim.Optimizer
        if kind == "sgd":
            self.opt = torch.optim.SGD(groups, lr=t["lr"], momentum=t["beta1"], foreach=False)
        elif kind == "adam":
            self.opt = torch.optim.Adam(groups, lr=t["lr"], betas=(t["beta1"], t["beta2"]), eps=t["eps"], foreach=False)
        else:
            self.opt = torch.optim.AdamW(
                groups, lr=t["lr"], betas=(t["beta1"], t["beta2"]), eps=t["eps"], foreach=False
            )

    def _load_optimizer_state(self, full: dict[str, list[torch.Tensor]]) -> None:
        from torch.distributed.tensor import DTensor, distribute_tensor

        named = dict(self.model.named_parameters())
        slots = ckpt.state_slots(self.config["train"]["optimizer"])
        for s in self.specs:
            if self.owner.get(s.name, self.dp_index) != self.dp_index:
                continue
            p = named[s.name]
            st: dict[str, torch.Tensor] = {}
            for slot, v in zip(slots, full[s.name], strict=True):
                shard = slice_shard(s.name, v.to(self.device), self.tp, self.tp_index, self.model.padded_vocab)
                st[slot] = (
                    distribute_tensor(shard, p.device_mesh, p.placements)
                    if isinstance(p, DTensor)
                    else shard.reshape(p.shape)
                )
            if slots[0] != "momentum_buffer":
                st["step"] = torch.tensor(float(self.optimizer_steps))
            self.opt.state[p] = st

    # ---- one step ---------------------------------------------------------------------------------------

    def _micro(self, step: int, a: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.config["train"]
        G, m = t["globalBatch"], t["microBatch"]
        x, y = self.sampler.batch(step, self.dp_index * (G // self.dp) + a * m, m)
        return x.to(self.device), y.to(self.device)

    def agree(self, stop: bool, chk: bool) -> tuple[bool, bool]:
        """Rank 0's control decisions, on every rank (one tiny broadcast before each step)."""
        flags = torch.tensor([float(stop), float(chk)], dtype=torch.float64, device=self.device)
        self.comm.call("broadcast-world", 16, lambda: dist.broadcast(flags, src=0))
        a, b = flags.tolist()
        return a > 0, b > 0

    def train_step(self) -> dict[str, Any]:
        t = self.config["train"]
        step = self.step + 1
        lr = learning_rate(t, step)
        for g in self.opt.param_groups:
            g["lr"] = lr
        if self.device.type == "cuda" and self.measure_memory:
            torch.cuda.reset_peak_memory_stats(self.device)
        sample = self.measure_memory and self.device.type != "cuda" and self.hook_sampling.due(step)
        t0 = time.perf_counter()
        self.wrapped.train()
        loss_sum = torch.zeros((), device=self.device)
        for a in range(self.accumulation):
            tokens, targets = self._micro(step, a)
            global_micro = self.dp_index * self.accumulation + a
            torch.manual_seed(mix(int(t["seed"]), step, global_micro, 0xD0))
            # DDP reduces on the last micro-batch only; FSDP2 reduce-scatters every one (ZeRO-2/3).
            no_sync = getattr(self.wrapped, "no_sync", None)
            ctx = no_sync() if callable(no_sync) and a < self.accumulation - 1 else _null()
            counter = SavedTensorCounter() if sample and a == 0 else None
            with ctx:
                with (
                    counter.counting() if counter else _null(),
                    torch.autocast(self.device.type, torch.bfloat16, enabled=self.autocast),
                ):
                    loss = self.wrapped(tokens, targets)
                (loss / self.accumulation).backward()
            if counter:
                self.activations = counter.bytes
            loss_sum += loss.detach().float()
        # One world all-reduce: [loss, Σg²] — the mean loss and the global norm over TP shards (replicated
        # parameters once) and ZeRO partitions.
        sq = torch.zeros((), dtype=torch.float64, device=self.device)
        sharded_over_dp = self.zero >= 2
        for name, prm in self.model.named_parameters():
            if prm.grad is None:
                continue
            if not is_sharded(name, self.tp) and self.tp_index != 0:
                continue
            if not sharded_over_dp and self.dp_index != 0:
                continue
            sq += local(prm.grad).double().pow(2).sum()
        mean_loss = (
            loss_sum.double() / self.accumulation / self.dp
            if self.tp_index == 0
            else torch.zeros((), dtype=torch.float64, device=self.device)
        )
        packed = torch.stack([mean_loss, sq])
        self.comm.call("all-reduce-world", 16, lambda: dist.all_reduce(packed))
        loss_v, sq_v = packed.tolist()
        norm = math.sqrt(sq_v)
        clip = t["gradClip"]
        if clip > 0:
            coef = min(1.0, clip / (norm + 1e-6))
            if coef < 1.0:
                for prm in self.model.parameters():
                    if prm.grad is not None:
                        prm.grad.mul_(coef)
        self.opt.step()
        self.optimizer_steps += 1
        if self.owner:
            named = dict(self.model.named_parameters())
            ranks = dist.get_process_group_ranks(self.dp_group)
            for s in self.specs:
                data = named[s.name].data
                self.comm.call(
                    "broadcast-dp",
                    data.numel() * data.element_size(),
                    functools.partial(dist.broadcast, data, src=ranks[self.owner[s.name]], group=self.dp_group),
                )
        if self.untimed:
            self._count_untimed_fsdp()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.comm.settle()
        step_ms = (time.perf_counter() - t0) * 1000
        self.last_step_ms = step_ms
        if self.measure_memory and self.device.type != "cuda":
            self.hook_sampling.step_done(step, step_ms / 1000)
        if self.measure_memory:
            cats, peak, cap = categories(self.model, self.opt, self.activations, self.device, tensors=self.tensors)
        else:
            cats, peak, cap = dict.fromkeys(CATEGORIES, 0), 0, None
        # The model's, not the optimizer's: under ZeRO-1 the optimizer holds only this rank's share.
        self.model.zero_grad(set_to_none=True)
        self.step = step
        return {
            "step": step,
            "loss": loss_v,
            "lr": lr,
            "gradNorm": norm,
            "stepMs": step_ms,
            "memory": cats,
            "peak": peak,
            "capacity": cap,
        }

    def device_used(self, step: int, last: int | None) -> int | None:
        """The CUDA device's used memory (nvidia-smi/NVML), read on the steps the policy picks (nvidia-smi costs
        tens of ms; the read is timed alone as the sample's cost); else the last reading."""
        if not self.measure_memory:
            return last
        if not self.device_sampling.due(step):
            self.device_sampling.step_done(step, self.last_step_ms / 1000)
            return last
        t0 = time.perf_counter()
        used = gpu_used_bytes(self.device.index or 0)
        self.device_sampling.step_done(step, self.last_step_ms / 1000, extra=time.perf_counter() - t0)
        return used

    @torch.no_grad()
    def evaluate(self) -> float:
        assert self.eval_sampler is not None
        t = self.config["train"]
        self.model.eval()
        total = 0.0
        for i in range(t["evalBatches"]):
            x, y = self.eval_sampler.batch(0, i * t["microBatch"], t["microBatch"])
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.autocast):
                total += float(self.model(x.to(self.device), y.to(self.device)))
        self.model.train()
        return total / int(t["evalBatches"])

    # ---- checkpoints ------------------------------------------------------------------------------------

    def _full(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """The full tensor of this rank's piece (collective over the mesh; every rank calls it in order)."""
        full_tensor = getattr(t, "full_tensor", None)
        whole = full_tensor() if callable(full_tensor) else t
        if self.tp > 1 and is_sharded(name, self.tp):
            parts = [torch.empty_like(whole) for _ in range(self.tp)]
            dist.all_gather(parts, whole.contiguous(), group=self.tpg.group)
            whole = join_shards(name, parts, self.shape.vocab)
        return whole.detach().float().cpu()

    def gather_checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, list[torch.Tensor]]]:
        named = dict(self.model.named_parameters())
        slots = ckpt.state_slots(self.config["train"]["optimizer"])
        ranks = dist.get_process_group_ranks(self.dp_group)
        params: dict[str, torch.Tensor] = {}
        opt: dict[str, list[torch.Tensor]] = {}
        for s in self.specs:
            p = named[s.name]
            params[s.name] = self._full(s.name, p.data if not hasattr(p, "full_tensor") else p)
            st = self.opt.state.get(p, {})
            vals = []
            for slot in slots:
                v = st.get(slot)
                if self.owner:
                    buf = (v if v is not None else torch.zeros_like(p.data)).detach().clone()
                    dist.broadcast(buf, src=ranks[self.owner[s.name]], group=self.dp_group)
                    v = buf
                elif v is None:
                    v = torch.zeros_like(p)
                vals.append(self._full(s.name, v))
            opt[s.name] = vals
        return params, opt

    def save(self, folder: str, last_loss: float | None) -> int:
        params, opt = self.gather_checkpoint()
        if self.rank != 0:
            return 0
        if self.channel is not None:
            # The coordinator adds state.json and config.json when every rank has reported (rank-channel.md).
            from .safetensors import write_safetensors

            os.makedirs(folder, exist_ok=True)
            kind = self.config["train"]["optimizer"]
            n = write_safetensors(
                os.path.join(folder, "model.safetensors"),
                [(s.name, params[s.name]) for s in self.specs],
                {"format": "pt"},
            )
            n += write_safetensors(
                os.path.join(folder, "optimizer.safetensors"),
                [
                    (f"{s.name}.{slot}", opt[s.name][i])
                    for s in self.specs
                    for i, slot in enumerate(ckpt.state_slots(kind))
                ],
                {"format": "pt", "kind": kind, "steps": str(self.optimizer_steps)},
            )
            return n
        return ckpt.write_full(folder, self.specs, params, opt, self.state_json(last_loss), self.shape)

    def state_json(self, last_loss: float | None) -> dict[str, Any]:
        t = self.config["train"]
        out: dict[str, Any] = {
            "format": ckpt.FORMAT,
            "version": ckpt.VERSION,
            "step": self.step,
            "tokens": self.step * t["globalBatch"] * self.shape.positions,
            "data": {"nextStep": self.step + 1, "description": self.data.description},
            "rng": {"seed": t["seed"]},
            "optimizer": {
                "kind": t["optimizer"],
                "beta1": t["beta1"],
                "beta2": t["beta2"],
                "eps": t["eps"],
                "weightDecay": t["weightDecay"],
                "steps": self.optimizer_steps,
            },
            "model": ckpt.model_state(self.shape),
            "metricsBytes": 0,
            "savedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": self.config,
            "engine": "torch",
        }
        if last_loss is not None:
            out["lastLoss"] = last_loss
        return out

    def _count_untimed_fsdp(self) -> None:
        """Where this torch cannot time FSDP2's collectives (_wrap): the step's all-gathers and
        reduce-scatters from the sizes, ms 0. Per micro-batch each unit (a block, the root) is gathered for
        its forward and, under ZeRO-3, again for its backward, and reduce-scattered once; bytes are the
        unsplit buffers (the local shard times dp)."""
        units: list[nn.Module] = [*self.model.blocks(), self.model]
        seen: set[int] = set()
        gathers = 2 if self.zero == 3 else 1
        for u in units:
            own = [q for q in u.parameters() if id(q) not in seen]
            seen.update(id(q) for q in own)
            nbytes = sum(local(q).numel() * q.element_size() * self.dp for q in own)
            if "all-gather-dp" in self.untimed:
                self.comm.add("all-gather-dp", nbytes * gathers * self.accumulation, 0.0, gathers * self.accumulation)
            if "reduce-scatter-dp" in self.untimed:
                self.comm.add("reduce-scatter-dp", nbytes * self.accumulation, 0.0, self.accumulation)

    def comm_stats(self) -> list[dict[str, Any]]:
        return self.comm.stats()


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _timed_allreduce_hook(state, bucket):  # type: ignore[no-untyped-def]
    """DDP's all-reduce (average over the data-parallel group), timed for the comm gauge. No annotations:
    DDP checks them against the real classes, and this module's are strings."""
    buf = bucket.buffer()
    buf.div_(state.dp)
    mark = state.comm.start()
    fut = dist.all_reduce(buf, group=state.dp_group, async_op=True).get_future()

    def done(f: torch.futures.Future[Any]) -> torch.Tensor:
        state.comm.finish(mark, "all-reduce-dp", buf.numel() * buf.element_size())
        out: torch.Tensor = buf
        return out

    return fut.then(done)


def _checkpoint_folder(run_dir: str | None, step: int) -> tuple[str, bool] | None:
    """(folder, commit here) for checkpoint `step`, or None without a run directory."""
    template = os.environ.get("SCALELM_CHECKPOINT_TEMPLATE")
    if template:
        return template.replace("{step}", ckpt.step_folder(step)), False
    if not run_dir:
        return None
    return os.path.join(
        run_dir, "checkpoints", f".tmp-{ckpt.step_folder(step)}-{os.getpid()}-{int(time.time() * 1000)}"
    ), True


def run(args: dict[str, Any], channel: Channel | None, emit: Any, where: dict[str, int]) -> tuple[str, int]:
    r = Rank(args, channel)
    t = r.config["train"]
    run_dir = os.environ.get("SCALELM_RUN_DIR") or args.get("runDir")
    tokens_per_step = t["globalBatch"] * r.shape.positions
    predicted = args.get("predicted")
    last_loss: float | None = None
    last_saved = -1
    reason = "completed"
    device_used: int | None = None
    node = node_ref()  # this rank's machine in a multi-node run (None on one machine)
    if r.rank == 0:
        p = r.config["parallel"]
        emit(
            {
                "type": "log",
                "level": "info",
                "t": int(time.time() * 1000),
                "rank": 0,
                "source": "torch",
                "message": f"torch {torch.__version__}: dp={p['dp']} tp={p['tp']} zero={p['zero']} on {r.device.type} "
                f"({'nccl' if r.device.type == 'cuda' else 'gloo'}); {r.shape.family} {r.shape.layers}L "
                f"h{r.shape.hidden} a{r.shape.heads} vocab {r.shape.vocab}; data: {r.data.description}; "
                f"{r.accumulation} micro-batches per rank per step",
            }
        )
        if r.untimed:
            emit(
                {
                    "type": "log",
                    "level": "warn",
                    "t": int(time.time() * 1000),
                    "rank": 0,
                    "source": "torch",
                    "message": f"torch {torch.__version__}'s FSDP2 cannot take timed comms "
                    f"(set_custom_all_gather/_reduce_scatter): {' and '.join(r.untimed)} are counted from the "
                    "sizes, their time shows as 0 ms",
                }
            )

    def save() -> None:
        nonlocal last_saved
        where = _checkpoint_folder(run_dir, r.step)
        if where is None:
            return
        folder, commit_here = where
        nbytes = r.save(folder, last_loss)
        if channel:
            channel.send({"k": "saved", "rank": r.rank, "step": r.step, "bytes": nbytes})
        if commit_here and r.rank == 0:
            ckpt.commit(os.path.dirname(folder), folder, r.step)
        dist.barrier()
        last_saved = r.step

    while r.step < t["steps"]:
        where["step"] = r.step + 1
        stop = chk = False
        if channel:
            # A plain progress: waiting for the coordinator's ack of a `sync` progress hung a run under the
            # CLI (the ack did not come), so a stop asked while step N ran may end the run at N or N + 1.
            channel.send({"k": "progress", "rank": r.rank, "step": r.step + 1})
            for c in channel.take_controls():
                stop = stop or c["action"] == "stop"
                chk = chk or c["action"] == "checkpoint"
        # Rank 0's decision reaches every rank before the step, so all act after the same step.
        stop, chk = r.agree(stop, chk)
        if chk and last_saved != r.step:
            save()
        if stop:
            reason = "stopped"
            break
        out = r.train_step()
        last_loss = out["loss"]
        now = int(time.time() * 1000)
        mem = out["memory"]
        if r.rank == 0:
            emit(
                {
                    "type": "step",
                    "step": out["step"],
                    "loss": out["loss"],
                    "lr": out["lr"],
                    "gradNorm": out["gradNorm"],
                    "tokensPerSec": tokens_per_step / max(out["stepMs"], 1e-6) * 1000,
                    "stepMs": out["stepMs"],
                    "memory": {**mem, "peak": out["peak"]},
                    "tokens": out["step"] * tokens_per_step,
                    "t": now,
                }
            )
        device = f"cpu:{r.rank}"
        cap = out["capacity"]
        if r.device.type == "cuda":
            device = (
                str(torch.cuda.get_device_properties(r.device).uuid)
                if hasattr(torch.cuda.get_device_properties(r.device), "uuid")
                else f"cuda:{r.device.index}"
            )
            device_used = r.device_used(out["step"], device_used)
            if device_used is not None:
                mem = {**mem, "deviceUsed": device_used}
        else:
            cap = int(r.config.get("devices", {}).get("memory", 0))
        m: dict[str, Any] = {
            "type": "memory",
            "rank": r.rank,
            "t": now,
            "step": out["step"],
            "categories": mem,
            "stepPeak": out["peak"],
            "capacity": cap,
            "device": device,
            # Which machine, as the Monitor says it: the dashboard groups ranks (and their GPUs) by node.
            **({"node": node} if node else {}),
        }
        if predicted:
            m["predicted"] = predicted
        if r.measure_memory:
            emit(m, rank=r.rank)
        emit(
            {"type": "comm", "rank": r.rank, "t": now, "step": out["step"], "collectives": r.comm_stats()}, rank=r.rank
        )
        if r.eval_sampler and t["evalEvery"] > 0 and out["step"] % t["evalEvery"] == 0:
            ev = r.evaluate()
            if r.rank == 0:
                emit({"type": "eval", "step": out["step"], "loss": ev, "t": int(time.time() * 1000)})
        if t["checkpointEvery"] > 0 and out["step"] % t["checkpointEvery"] == 0:
            save()
    if last_saved != r.step:
        save()
    return reason, r.step


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m scalelm.train", description="One rank of the torch engine (run by torchrun)."
    )
    ap.add_argument("--args", required=True, help="JSON file: config, baseDir, start, startStep, device, predicted")
    ap.add_argument(
        "--check", action="store_true", help="only check that the engine can run this layout (exit 2 if not)"
    )
    ns = ap.parse_args(argv)
    try:
        with open(ns.args) as f:
            args = json.load(f)
        if not isinstance(args, dict) or not isinstance(args.get("config"), dict):
            raise ValueError("expected an object with a `config` (the resolved run config)")
    except (OSError, ValueError) as e:
        print(f"scalelm.train: cannot use --args {ns.args}: {e}", file=sys.stderr)
        return 2
    device = args.get("device", "cpu")
    world_env = os.environ.get("WORLD_SIZE")
    issues = layout_issues(args["config"], int(world_env) if world_env and not ns.check else None, device)
    if issues:
        print("the torch engine cannot run this layout: " + "; ".join(issues), file=sys.stderr)
        return 2
    if ns.check:
        return 0
    rank, world, local_rank = (
        int(os.environ["RANK"]),
        int(os.environ["WORLD_SIZE"]),
        int(os.environ.get("LOCAL_RANK", "0")),
    )
    if device == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if device == "cuda" else "gloo")
    channel = Channel.from_env(rank, world, local_rank)

    def emit(m: dict[str, Any], rank: int = 0) -> None:
        if channel:
            channel.msg(rank, m)
        elif rank == 0:
            # No coordinator (tests, a bare torchrun): rank 0's messages as lines on stdout, in one write so
            # the agent's merged stdout never splits a line.
            os.write(1, ("SCALELM " + json.dumps(m, separators=(",", ":")) + "\n").encode())

    where = {"step": int(args.get("startStep", 0)) + 1}  # the step in progress, for an error line
    try:
        reason, step = run(args, channel, emit, where)
        if channel:
            channel.send({"k": "done", "rank": rank, "step": step, "reason": reason})
        # Every rank has finished its last step and checkpoint before any of them tears the group down: a
        # rank that destroyed its gloo group while a peer still used it aborted that peer in C++
        # ("terminate called without an active exception"), failing a run that had succeeded.
        dist.barrier()
        return 0
    except Exception as e:
        traceback.print_exc()
        if channel:
            with contextlib.suppress(Exception):
                channel.send(
                    {
                        "k": "error",
                        "rank": rank,
                        "step": where["step"],
                        "message": f"{type(e).__name__}: {e}"[:16000],
                        "kind": type(e).__name__,
                    }
                )
        return 1
    finally:
        if channel:
            channel.close()
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The group is destroyed and the channel closed: skip the interpreter's teardown, where the C++ side of
    # torch.distributed (store and gloo threads) can still abort the process after a clean run.
    os._exit(code)
