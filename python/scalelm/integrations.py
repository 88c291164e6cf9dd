"""Monitor hooks for training frameworks, each imported only where its library is installed.

trainer = transformers.Trainer(..., callbacks=[scalelm.integrations.transformers_callback()])
"""

from __future__ import annotations

from typing import Any

from .monitor import Monitor


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
                self.monitor = Monitor(model, optimizer, name=name or getattr(args, "run_name", None) or "trainer")

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
