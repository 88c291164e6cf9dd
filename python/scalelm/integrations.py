"""Monitor hooks for training frameworks, each imported only where its library is installed.

trainer = transformers.Trainer(..., callbacks=[scalelm.integrations.transformers_callback()])
trainer = lightning.Trainer(..., callbacks=[scalelm.integrations.lightning_callback()])

Each passes the Monitor what its framework knows better than detection: the run's length (for the
out-of-memory forecast), the micro-batch, gradient accumulation, mixed precision and the strategy.
"""

from __future__ import annotations

from typing import Any

from .monitor import Monitor
from .shape import input_shape


def transformers_callback(name: str | None = None) -> Any:
    """A transformers.TrainerCallback that reports every logged step through a Monitor (set logging_steps=1
    for every step). Loss, learning rate and grad norm are the Trainer's logged values."""
    from transformers import TrainerCallback

    class ScaleLMCallback(TrainerCallback):
        def __init__(self) -> None:
            self.monitor: Monitor | None = None

        def on_train_begin(
            self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None, **kwargs: Any
        ) -> None:
            if model is not None:
                self.monitor = Monitor(
                    model,
                    optimizer,
                    name=name or getattr(args, "run_name", None) or "trainer",
                    total_steps=int(getattr(state, "max_steps", 0) or 0) or None,
                    layout=_trainer_layout(args),
                )

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            # The Trainer reports only at logging steps: name each step as it starts (a dead rank's step).
            if self.monitor is not None:
                self.monitor.step_started(int(state.global_step) + 1)

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
        ) -> None:
            if self.monitor is None or not logs or "loss" not in logs:
                return
            tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
            delta = tokens - getattr(self, "_tokens", 0)
            self._tokens = tokens
            self.monitor.step(
                loss=float(logs["loss"]),
                lr=logs.get("learning_rate"),
                grad_norm=logs.get("grad_norm"),
                tokens=delta or None,
                step=int(state.global_step),
            )

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.monitor is not None:
                self.monitor.close()
                self.monitor = None

    return ScaleLMCallback()


def _trainer_layout(args: Any) -> dict[str, Any]:
    """What transformers.TrainingArguments say about the layout (the Trainer unwraps the model it passes)."""
    out: dict[str, Any] = {}
    micro = getattr(args, "per_device_train_batch_size", None)
    if isinstance(micro, int) and micro > 0:
        out["microBatch"] = micro
    accum = getattr(args, "gradient_accumulation_steps", None)
    if isinstance(accum, int) and accum > 0:
        out["gradAccum"] = accum
    if getattr(args, "bf16", False):
        out["precision"] = "bf16-mixed"
    elif getattr(args, "fp16", False):
        out["precision"] = "fp16-mixed"
    fsdp = " ".join(str(o) for o in (getattr(args, "fsdp", None) or []))
    if getattr(args, "deepspeed", None):
        out["strategy"] = "deepspeed"
        ds = getattr(getattr(args, "hf_deepspeed_config", None), "config", None)
        stage = ds.get("zero_optimization", {}).get("stage") if isinstance(ds, dict) else None
        if isinstance(stage, int):
            out["zero"] = stage
    elif fsdp:
        out["strategy"] = "fsdp"
        out["zero"] = 2 if "shard_grad_op" in fsdp else 3
    elif int(getattr(args, "world_size", 1) or 1) > 1:
        out["strategy"], out["zero"] = "ddp", 0
    return out


def lightning_callback(name: str | None = None) -> Any:
    """A Lightning Callback that reports every optimizer step through a Monitor: the loss the
    training_step returned, the learning rate and grad norm from the optimizer and gradients."""
    try:
        from lightning.pytorch import Callback
    except ImportError:  # the older package name
        from pytorch_lightning import Callback  # type: ignore[assignment]

    class ScaleLMLightningCallback(Callback):
        def __init__(self) -> None:
            self.monitor: Monitor | None = None
            self._last_step = 0

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            optimizers = list(getattr(trainer, "optimizers", []) or [])
            total = int(getattr(trainer, "max_steps", -1) or -1)
            if total <= 0:
                estimated = getattr(trainer, "estimated_stepping_batches", None)
                total = int(estimated) if isinstance(estimated, int | float) and estimated != float("inf") else 0
            self._last_step = int(trainer.global_step)
            self.monitor = Monitor(
                pl_module,
                optimizers[0] if optimizers else None,
                name=name or type(pl_module).__name__,
                total_steps=total or None,
                layout=_lightning_layout(trainer),
            )

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            # training_step need not call the module's forward: the batch shows the micro-batch, and the forward
            # runs from here to the backward (activations on sampled steps).
            if self.monitor is not None:
                args: tuple[Any, ...] = ()
                kwargs: dict[str, Any] = batch if isinstance(batch, dict) else {}
                if not isinstance(batch, dict):
                    args = tuple(batch) if isinstance(batch, list | tuple) else (batch,)
                self.monitor.observe_inputs(args, kwargs)
                self.monitor.step_started(int(trainer.global_step) + 1)
                self.monitor.forward_started(input_shape(args, kwargs))

        def on_before_backward(self, trainer: Any, pl_module: Any, loss: Any) -> None:
            if self.monitor is not None:
                self.monitor.forward_ended()

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            # A batch that only accumulated gradients is not an optimizer step.
            if self.monitor is None or int(trainer.global_step) == self._last_step:
                return
            self._last_step = int(trainer.global_step)
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if loss is None:
                loss = trainer.callback_metrics.get("train_loss", float("nan"))
            self.monitor.step(loss=float(loss), step=self._last_step)

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            if self.monitor is not None:
                self.monitor.close()
                self.monitor = None

        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            if self.monitor is not None:
                self.monitor.close("stopped")
                self.monitor = None

    return ScaleLMLightningCallback()


def _lightning_layout(trainer: Any) -> dict[str, Any]:
    """What a Lightning Trainer says about the layout: its strategy, accumulation and precision."""
    out: dict[str, Any] = {}
    accum = getattr(trainer, "accumulate_grad_batches", None)
    if isinstance(accum, int) and accum > 0:
        out["gradAccum"] = accum
    precision = str(getattr(trainer, "precision", ""))
    if precision.startswith("bf16") and "mixed" in precision:
        out["precision"] = "bf16-mixed"
    elif precision.startswith("16") and "mixed" in precision:
        out["precision"] = "fp16-mixed"
    strategy = type(getattr(trainer, "strategy", None)).__name__
    if strategy.startswith("DDP"):
        out["strategy"], out["zero"] = "ddp", 0
    elif strategy.startswith("FSDP"):
        out["strategy"] = "fsdp"
    elif strategy.startswith("DeepSpeed"):
        out["strategy"] = "deepspeed"
        stage = getattr(trainer.strategy, "config", {}).get("zero_optimization", {}).get("stage")
        if isinstance(stage, int):
            out["zero"] = stage
    return out
