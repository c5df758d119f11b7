"""get_loss_fn and the shape alignment of predictions and targets shared with the metrics."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["get_loss_fn", "align_outputs", "TASKS", "LOSSES"]

TASKS = ("regression", "classification", "edge_prediction")

LOSSES: dict[str, dict[str, Callable[[], nn.Module]]] = {
    "regression": {
        "mae": nn.L1Loss,
        "l1": nn.L1Loss,
        "mse": nn.MSELoss,
        "huber": nn.HuberLoss,
    },
    "classification": {
        "cross_entropy": nn.CrossEntropyLoss,
        "bce_logits": nn.BCEWithLogitsLoss,
    },
    "edge_prediction": {
        "bce_logits": nn.BCEWithLogitsLoss,
        "bce": nn.BCEWithLogitsLoss,
    },
}


def check_task(task: str) -> str:
    """Return ``task`` if known, else raise ValueError listing the valid ones."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    return task


def get_loss_fn(
    task: str, loss_type: str | None = None, num_classes: int | None = None
) -> nn.Module:
    """Return the loss module for a task.

    Defaults: regression ``mae`` (L1, as ZINC is reported in MAE); classification
    ``cross_entropy`` (logits ``[B, C]``, integer targets ``[B]``), or ``bce_logits`` when
    ``num_classes == 1`` (one logit per sample); edge_prediction ``bce_logits`` (one logit per
    candidate edge). Use :func:`align_outputs` (the Trainer does) to bring predictions and
    targets to the shapes these losses expect.

    Args:
        task: ``regression``, ``classification`` or ``edge_prediction``.
        loss_type: Regression ``mse``/``mae`` (alias ``l1``)/``huber``; classification
            ``cross_entropy``/``bce_logits``; edge_prediction ``bce_logits`` (alias ``bce``).
        num_classes: Only used to pick the classification default.

    Returns:
        A loss module called as ``loss_fn(pred, target)`` returning the batch mean.

    Raises:
        ValueError: On an unknown task or a loss type the task does not support.
    """
    losses = LOSSES[check_task(task)]
    if loss_type is None:
        if task == "classification":
            loss_type = "bce_logits" if num_classes == 1 else "cross_entropy"
        else:
            loss_type = next(iter(losses))
    key = loss_type.lower()
    if key not in losses:
        raise ValueError(
            f"unknown loss_type {loss_type!r} for task {task!r}; valid: {', '.join(losses)}"
        )
    return losses[key]()


def align_outputs(
    pred: torch.Tensor, target: torch.Tensor, task: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bring model output and target to matching shapes and dtypes for the task's loss.

    - regression: a prediction with as many elements as the target is reshaped to the
      target's shape (``[B, 1]`` vs ``[B]``); the target becomes float.
    - classification: with ``pred [B, C]`` (C > 1) and a class-index target (``[B]`` or
      ``[B, 1]``) the target becomes ``long [B]``; with a same-shape target (multi-label) both
      stay; otherwise (one logit per sample) both are flattened to ``[B]``, target float.
    - edge_prediction: both flattened to ``[E]``, target float.

    Predictions are returned in float32 (autocast may produce bf16/fp16), so losses and
    metrics are computed in full precision.

    Args:
        pred: Model output.
        target: Targets from the batch.
        task: One of :data:`TASKS`.

    Returns:
        ``(pred, target)``.

    Raises:
        ValueError: When the shapes cannot be matched.
    """
    pred = pred.float()
    if task == "regression":
        if pred.shape != target.shape:
            if pred.numel() != target.numel():
                raise ValueError(
                    f"regression prediction shape {tuple(pred.shape)} does not match target "
                    f"shape {tuple(target.shape)}"
                )
            pred = pred.reshape(target.shape)
        return pred, target.float()
    if task == "classification" and pred.dim() == 2 and pred.size(1) > 1:
        if target.shape == pred.shape:
            return pred, target.float()
        if target.numel() != pred.size(0):
            raise ValueError(
                f"class-index targets {tuple(target.shape)} do not match logits "
                f"{tuple(pred.shape)}"
            )
        return pred, target.reshape(-1).long()
    if pred.numel() != target.numel():
        raise ValueError(
            f"{task} prediction shape {tuple(pred.shape)} does not match target shape "
            f"{tuple(target.shape)}"
        )
    return pred.reshape(-1), target.reshape(-1).float()
