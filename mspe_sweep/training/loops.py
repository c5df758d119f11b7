"""The per-batch train and eval loops: :class:`Loop`, which every ``Trainer`` owns.

Batches are either PyG-style objects (anything with ``.to(device)`` and ``.y``; the model is
called as ``model(batch)`` and ``batch.num_graphs`` counts samples for throughput) or
``(x, y)`` tuples/lists (the model is called as ``model(x)``; ``x`` may be a tensor or a
nested tuple/list/dict of tensors). torch_geometric itself is never imported here.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Iterable, Iterator

import torch
from torch import nn

from .losses import align_outputs
from .utils import GradientAccumulator, ProgressDisplay

__all__ = ["NonFiniteLossError", "EpochOutputs", "Loop"]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; raised before any optimizer step uses it."""


@dataclass
class EpochOutputs:
    """What one pass over a loader produced (before metrics)."""

    loss_sum: float = 0.0  # sum over batches of (batch mean loss * target rows)
    count: int = 0  # target rows seen: the loss weights
    samples: int = 0  # graphs (PyG) or rows (tuples): for throughput
    preds: list[torch.Tensor] = field(default_factory=list)
    targets: list[torch.Tensor] = field(default_factory=list)
    last_lr: float | None = None  # lr of the last optimizer step (train only)

    @property
    def loss(self) -> float:
        """Sample-weighted mean loss of the pass."""
        return self.loss_sum / self.count if self.count else float("nan")


def move_to_device(obj: Any, device: torch.device) -> Any:
    """Move a tensor, a PyG batch (anything with ``.to``) or nested containers to ``device``."""
    non_blocking = device.type == "cuda"
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: move_to_device(v, device) for k, v in obj.items()}
    if callable(getattr(obj, "to", None)):
        return obj.to(device, non_blocking=non_blocking)
    return obj


def unpack_batch(batch: Any, device: torch.device) -> tuple[Any, torch.Tensor | None, int]:
    """Return ``(model_input, target or None, samples)`` with everything on ``device``.

    Raises:
        TypeError: For batch types that are neither PyG-style nor tensors/tuples.
    """
    if isinstance(batch, (list, tuple)):
        if not 1 <= len(batch) <= 2:
            raise TypeError(f"tuple batches must be (x, y) or (x,), got length {len(batch)}")
        x = move_to_device(batch[0], device)
        y = move_to_device(batch[1], device) if len(batch) == 2 else None
        samples = _rows(y) if y is not None else _rows(x)
        return x, y, samples
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device)
        return batch, None, _rows(batch)
    if callable(getattr(batch, "to", None)):
        batch = batch.to(device)
        y = getattr(batch, "y", None)
        samples = getattr(batch, "num_graphs", None)
        return batch, y, int(samples) if samples is not None else _rows(y)
    raise TypeError(
        f"unsupported batch type {type(batch).__name__}: use PyG batches (with .y) or (x, y) "
        "tuples/lists"
    )


def _rows(obj: Any) -> int:
    while isinstance(obj, (list, tuple)):
        obj = obj[0]
    if isinstance(obj, dict):
        obj = next(iter(obj.values()))
    return int(obj.size(0)) if isinstance(obj, torch.Tensor) and obj.dim() > 0 else 1


def _lookahead(iterable: Iterable[Any]) -> Iterator[tuple[Any, bool]]:
    """Yield ``(item, is_last)``; works for loaders without ``len``."""
    iterator = iter(iterable)
    try:
        current = next(iterator)
    except StopIteration:
        return
    for upcoming in iterator:
        yield current, False
        current = upcoming
    yield current, True


StepScheduler = Callable[[str], None]
EmitLog = Callable[[dict, str], None]


class Loop:
    """The per-batch train and eval loops of one ``Trainer`` (``trainer.loop``).

    The loop owns the state that changes batch by batch: the optimizer-step counter
    ``global_step``, gradient accumulation, the AMP ``GradScaler`` (CUDA fp16 only) and the
    running loss since the last ``"train"`` log. It holds no reference to the Trainer and
    changes nothing on it; what the Trainer decides per optimizer step (the scheduler, the log
    hooks) it passes to :meth:`train` as functions.

    Args:
        model: Called as ``model(batch)`` / ``model(x)`` (already on ``device``).
        optimizer: Over the model's parameters; None for evaluation only.
        loss_fn: ``loss_fn(pred, target)`` on aligned, float32 predictions.
        task_type: For ``align_outputs``.
        device: Where batches are moved.
        grad_clip: Max total gradient norm, or None.
        mixed_precision: CUDA: fp16 autocast + GradScaler. CPU: bf16 autocast, no scaler.
        accumulation_steps: Micro-batches per optimizer step.
        log_every: Call ``emit_log(..., "train")`` every this many optimizer steps.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        task_type: str,
        device: torch.device,
        grad_clip: float | None = None,
        mixed_precision: bool = False,
        accumulation_steps: int = 1,
        log_every: int = 50,
    ) -> None:
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.task_type, self.device = task_type, device
        self.grad_clip, self.log_every = grad_clip, int(log_every)
        self.mixed_precision = bool(mixed_precision)
        on_cuda = device.type == "cuda"
        self.amp_dtype = torch.float16 if on_cuda else torch.bfloat16
        # Loss scaling is only needed for fp16; bf16 has fp32's exponent range.
        self.scaler = torch.amp.GradScaler("cuda") if self.mixed_precision and on_cuda else None
        self.accumulator = GradientAccumulator(accumulation_steps)
        self.global_step = 0

    def autocast(self) -> ContextManager:
        """The autocast context for forward passes (a no-op without mixed precision)."""
        if not self.mixed_precision:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def train(
        self,
        loader: Iterable[Any],
        epoch: int,
        step_scheduler: StepScheduler,
        emit_log: EmitLog,
        progress: ProgressDisplay | None = None,
    ) -> EpochOutputs:
        """One training pass: forward, loss, backward, (accumulated) optimizer steps.

        Args:
            loader: Batches with targets.
            epoch: The 1-based epoch number (for the error message and the progress line).
            step_scheduler: Called as ``step_scheduler("step")`` after every optimizer step.
            emit_log: Called as ``emit_log({"loss": ..., "lr": ...}, "train")`` every
                ``log_every`` optimizer steps (loss: running mean since the previous call).
            progress: Shown the running loss and throughput after every batch, or None.

        Raises:
            NonFiniteLossError: On a NaN/inf loss, before backward and any optimizer step.
        """
        out = EpochOutputs()
        window_sum, window_count = 0.0, 0  # running loss since the last "train" log
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        self.accumulator.reset()
        for index, (batch, is_last) in enumerate(_lookahead(loader)):
            inputs, target, samples = unpack_batch(batch, self.device)
            if target is None:
                raise TypeError(
                    "training batches need targets: (x, y) tuples or PyG batches with .y"
                )
            with self.autocast():
                raw = self.model(inputs)
            pred, target = align_outputs(raw, target, self.task_type)
            loss = self.loss_fn(pred, target)
            loss_value = loss.item()  # one host sync per micro-batch: needed for the check below
            if not math.isfinite(loss_value):
                raise NonFiniteLossError(
                    f"non-finite training loss ({loss_value}) at epoch {epoch}, batch "
                    f"{index + 1}, before optimizer step {self.global_step + 1}; try a lower "
                    "learning rate, grad_clip, or check the data for NaN/inf"
                )
            scaled = self.accumulator.scale(loss)
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()

            rows = _rows(target)
            out.loss_sum += loss_value * rows
            out.count += rows
            out.samples += samples
            window_sum += loss_value * rows
            window_count += rows
            out.preds.append(pred.detach())
            out.targets.append(target.detach())

            if self.accumulator.micro_step(is_last=is_last):
                out.last_lr = self.optimizer.param_groups[0]["lr"]
                self._optimizer_step()
                self.global_step += 1
                step_scheduler("step")
                if self.global_step % self.log_every == 0:
                    emit_log({"loss": window_sum / window_count, "lr": out.last_lr}, "train")
                    window_sum, window_count = 0.0, 0
            if progress is not None:
                rate = out.samples / max(time.perf_counter() - start, 1e-9)
                progress.batch(epoch, index, out.loss, rate)
        return out

    def _optimizer_step(self) -> None:
        optimizer, scaler = self.optimizer, self.scaler
        if self.grad_clip is not None:
            if scaler is not None:
                scaler.unscale_(optimizer)  # clip the true gradients, not the fp16-scaled ones
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def evaluate(self, loader: Iterable[Any], need_targets: bool = True) -> EpochOutputs:
        """One pass without gradients (the caller puts the model in eval mode).

        Batch losses stay on the device until the pass ends and are read back in one transfer
        (no host sync per batch); they are summed in batch order, exactly as ``.item()`` per
        batch would have.

        Args:
            loader: Batches.
            need_targets: If True, compute the loss and keep aligned predictions and targets;
                if False (``predict``), keep the raw model outputs only.
        """
        out = EpochOutputs()
        losses: list[torch.Tensor] = []  # [] float64 per batch: exact copies of the losses
        weights: list[int] = []  # target rows per batch
        for batch in loader:
            inputs, target, samples = unpack_batch(batch, self.device)
            with self.autocast():
                raw = self.model(inputs)
            out.samples += samples
            if not need_targets:
                out.preds.append(raw.float())
                continue
            if target is None:
                raise TypeError(
                    "evaluation batches need targets: (x, y) tuples or PyG batches with .y"
                )
            pred, target = align_outputs(raw, target, self.task_type)
            losses.append(self.loss_fn(pred, target).reshape(()).double())
            weights.append(_rows(target))
            out.preds.append(pred)
            out.targets.append(target)
        values = torch.stack(losses).tolist() if losses else []
        for value, rows in zip(values, weights):
            out.loss_sum += value * rows
            out.count += rows
        return out
