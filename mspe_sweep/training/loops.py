"""The per-batch train and eval loops used by :class:`~mspe_sweep.training.Trainer`.

Batches are either PyG-style objects (anything with ``.to(device)`` and ``.y``; the model is
called as ``model(batch)`` and ``batch.num_graphs`` counts samples for throughput) or
``(x, y)`` tuples/lists (the model is called as ``model(x)``; ``x`` may be a tensor or a
nested tuple/list/dict of tensors). torch_geometric itself is never imported here.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import torch

from .losses import align_outputs

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["NonFiniteLossError", "EpochOutputs", "run_train_loop", "run_eval_loop"]


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


def _optimizer_step(trainer: Trainer) -> None:
    optimizer, scaler = trainer.optimizer, trainer.scaler
    if trainer.grad_clip is not None:
        if scaler is not None:
            scaler.unscale_(optimizer)  # clip the true gradients, not the fp16-scaled ones
        torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), trainer.grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def run_train_loop(trainer: Trainer, loader: Iterable[Any], epoch: int) -> EpochOutputs:
    """One training pass: forward, loss, backward, (accumulated) optimizer steps.

    Per-step schedulers (``interval == "step"``) are stepped after every optimizer step; the
    ``"train"`` log hooks fire every ``trainer.log_every`` optimizer steps.

    Raises:
        NonFiniteLossError: On a NaN/inf loss, before backward and any optimizer step.
    """
    model, optimizer, accumulator = trainer.model, trainer.optimizer, trainer.accumulator
    out = EpochOutputs()
    window_sum, window_count = 0.0, 0  # running loss since the last "train" log
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    accumulator.reset()
    for index, (batch, is_last) in enumerate(_lookahead(loader)):
        inputs, target, samples = unpack_batch(batch, trainer.device)
        if target is None:
            raise TypeError("training batches need targets: (x, y) tuples or PyG batches with .y")
        with trainer.autocast():
            raw = model(inputs)
        pred, target = align_outputs(raw, target, trainer.task_type)
        loss = trainer.loss_fn(pred, target)
        loss_value = loss.item()  # one host sync per micro-batch: needed for the check below
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(
                f"non-finite training loss ({loss_value}) at epoch {epoch}, batch {index + 1}, "
                f"before optimizer step {trainer.global_step + 1}; try a lower learning rate, "
                "grad_clip, or check the data for NaN/inf"
            )
        scaled = accumulator.scale(loss)
        (trainer.scaler.scale(scaled) if trainer.scaler is not None else scaled).backward()

        rows = _rows(target)
        out.loss_sum += loss_value * rows
        out.count += rows
        out.samples += samples
        window_sum += loss_value * rows
        window_count += rows
        out.preds.append(pred.detach())
        out.targets.append(target.detach())

        if accumulator.micro_step(is_last=is_last):
            out.last_lr = optimizer.param_groups[0]["lr"]
            _optimizer_step(trainer)
            trainer.global_step += 1
            if trainer.scheduler is not None and getattr(trainer.scheduler, "interval", "") == (
                "step"
            ):
                trainer.scheduler.step()
            if trainer.global_step % trainer.log_every == 0:
                trainer.emit_log(
                    {"loss": window_sum / window_count, "lr": out.last_lr}, "train"
                )
                window_sum, window_count = 0.0, 0
        if trainer.progress_display is not None:
            rate = out.samples / max(time.perf_counter() - start, 1e-9)
            trainer.progress_display.batch(epoch, index, out.loss, rate)
    return out


@torch.no_grad()
def run_eval_loop(
    trainer: Trainer, loader: Iterable[Any], need_targets: bool = True
) -> EpochOutputs:
    """One pass without gradients (the caller puts the model in eval mode).

    Args:
        trainer: The trainer.
        loader: Batches.
        need_targets: If True, compute the loss and keep aligned predictions and targets; if
            False (``predict``), keep the raw model outputs only.
    """
    out = EpochOutputs()
    for batch in loader:
        inputs, target, samples = unpack_batch(batch, trainer.device)
        with trainer.autocast():
            raw = trainer.model(inputs)
        out.samples += samples
        if not need_targets:
            out.preds.append(raw.float())
            continue
        if target is None:
            raise TypeError(
                "evaluation batches need targets: (x, y) tuples or PyG batches with .y"
            )
        pred, target = align_outputs(raw, target, trainer.task_type)
        rows = _rows(target)
        out.loss_sum += trainer.loss_fn(pred, target).item() * rows
        out.count += rows
        out.preds.append(pred)
        out.targets.append(target)
    return out
