"""get_metrics: whole-epoch metrics computed with torch from concatenated predictions.

All metrics are computed once per epoch from every prediction and target of the epoch, never
as a mean of per-batch values. Definitions follow scikit-learn (tests compare against it).
"""

from __future__ import annotations

import math

import torch

from .losses import align_outputs, check_task

__all__ = ["get_metrics", "Metrics", "roc_auc", "average_precision", "precision_at_k"]

METRIC_NAMES = {
    "regression": ("mae", "mse", "rmse"),
    "classification": ("accuracy", "f1", "roc_auc", "ap"),
    "edge_prediction": ("roc_auc", "ap", "precision_at_k"),
}


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks of ``values [N]``, ties sharing their average rank."""
    order = torch.argsort(values)
    _, inverse, counts = torch.unique_consecutive(
        values[order], return_inverse=True, return_counts=True
    )
    # Rank range of tie group g is (end_g - count_g, end_g]; its average is end_g - (count_g-1)/2.
    ends = torch.cumsum(counts, 0).double()
    group_rank = ends - (counts.double() - 1) / 2
    ranks = torch.empty_like(group_rank[inverse])
    ranks[order] = group_rank[inverse]
    return ranks


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Binary ROC AUC (Mann-Whitney U with tie correction); NaN without both classes.

    Args:
        scores: ``[N]`` scores, higher = more positive.
        labels: ``[N]`` in {0, 1}.
    """
    labels = labels.bool()
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    rank_sum = _average_ranks(scores.double())[labels].sum().item()
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def average_precision(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Average precision, sum over thresholds of (R_n - R_{n-1}) * P_n (scikit-learn's).

    Args:
        scores: ``[N]`` scores, higher = more positive.
        labels: ``[N]`` in {0, 1}.

    Returns:
        AP, or NaN without positives.
    """
    labels = labels.double()
    n_pos = labels.sum().item()
    if n_pos == 0:
        return math.nan
    order = torch.argsort(scores.double(), descending=True, stable=True)
    sorted_scores, sorted_labels = scores.double()[order], labels[order]
    tps = torch.cumsum(sorted_labels, 0)
    # One threshold per distinct score: keep the last index of each tie group.
    last = torch.ones_like(sorted_scores, dtype=torch.bool)
    last[:-1] = sorted_scores[1:] != sorted_scores[:-1]
    tps = tps[last]
    seen = torch.nonzero(last).squeeze(1).double() + 1
    precision = tps / seen
    recall = tps / n_pos
    recall_steps = torch.diff(recall, prepend=recall.new_zeros(1))
    return float((recall_steps * precision).sum())


def precision_at_k(scores: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of positives among the ``min(k, N)`` highest scores."""
    k = min(k, scores.numel())
    if k == 0:
        return math.nan
    top = torch.topk(scores.double(), k).indices
    return float(labels[top].double().mean())


class Metrics:
    """Callable computing a task's metrics from whole-epoch predictions and targets.

    - regression: ``mae``, ``mse``, ``rmse`` (over all target elements).
    - classification: ``accuracy``, ``f1``, ``roc_auc``, ``ap``. Binary (one logit, or two
      logits with class 1 positive): F1/AUC/AP of the positive class. Multi-class (``C > 2``
      logits): macro F1 over the classes present in targets or predictions (as scikit-learn),
      and macro one-vs-rest AUC and AP over the classes whose AUC/AP is defined.
    - edge_prediction: ``roc_auc``, ``ap``, ``precision_at_k`` (precision@k over the top
      ``k`` scored edges; no ``@`` in the key because MLflow rejects it in metric names).

    Attributes:
        names: The metric keys the call returns (the loss is not among them).

    Args:
        task: ``regression``, ``classification`` or ``edge_prediction``.
        num_classes: Optional; only for documentation/validation of classification logits.
        k: ``k`` of ``precision_at_k``.
    """

    def __init__(self, task: str, num_classes: int | None = None, k: int = 100) -> None:
        self.task = check_task(task)
        self.num_classes = num_classes
        self.k = int(k)
        self.names = METRIC_NAMES[task]

    def __call__(self, preds: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Compute the metrics.

        Args:
            preds: Concatenated model outputs of the epoch (``[N]``, ``[N, 1]`` or ``[N, C]``
                logits).
            targets: Concatenated targets of the epoch.

        Returns:
            ``{name: float}`` for every name in :attr:`names`.
        """
        preds, targets = align_outputs(preds.detach().cpu(), targets.detach().cpu(), self.task)
        if self.task == "regression":
            err = (preds - targets).double()
            mse = float(err.pow(2).mean())
            return {"mae": float(err.abs().mean()), "mse": mse, "rmse": math.sqrt(mse)}
        if self.task == "edge_prediction":
            return {
                "roc_auc": roc_auc(preds, targets),
                "ap": average_precision(preds, targets),
                "precision_at_k": precision_at_k(preds, targets, self.k),
            }
        return self._classification(preds, targets)

    def _classification(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        if logits.dim() == 1:  # one logit per sample: [N]
            return self._binary(logits, (logits > 0).long(), targets.long())
        if logits.dim() != 2 or targets.dim() != 1:
            raise ValueError(
                "classification metrics need class-index targets [N] (no multi-label)"
            )
        if self.num_classes is not None and logits.size(1) != self.num_classes:
            raise ValueError(f"expected {self.num_classes} logits, got {logits.size(1)}")
        predicted = logits.argmax(dim=1)
        if logits.size(1) == 2:  # [N, 2]: class 1 is the positive class
            return self._binary(logits[:, 1] - logits[:, 0], predicted, targets)
        probs = torch.softmax(logits.double(), dim=1)
        present = torch.unique(torch.cat([targets, predicted]))
        f1s = [_f1(predicted == c, targets == c) for c in present.tolist()]
        aucs = [roc_auc(probs[:, c], targets == c) for c in range(logits.size(1))]
        aps = [average_precision(probs[:, c], targets == c) for c in range(logits.size(1))]
        return {
            "accuracy": float((predicted == targets).double().mean()),
            "f1": sum(f1s) / len(f1s),
            "roc_auc": _nanmean(aucs),
            "ap": _nanmean(aps),
        }

    @staticmethod
    def _binary(
        scores: torch.Tensor, predicted: torch.Tensor, targets: torch.Tensor
    ) -> dict[str, float]:
        return {
            "accuracy": float((predicted == targets).double().mean()),
            "f1": _f1(predicted == 1, targets == 1),
            "roc_auc": roc_auc(scores, targets),
            "ap": average_precision(scores, targets),
        }


def _f1(predicted: torch.Tensor, actual: torch.Tensor) -> float:
    """F1 of one class from boolean masks; 0 when it has no true positives (as scikit-learn)."""
    tp = int((predicted & actual).sum())
    denom = int(predicted.sum()) + int(actual.sum())
    return 2 * tp / denom if denom else 0.0


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def get_metrics(task: str, num_classes: int | None = None, k: int = 100) -> Metrics:
    """Return the metric calculator for a task (see :class:`Metrics`).

    Args:
        task: ``regression``, ``classification`` or ``edge_prediction``.
        num_classes: Expected number of logits for multi-class classification (optional).
        k: ``k`` of ``precision_at_k`` (edge_prediction).

    Raises:
        ValueError: On an unknown task.
    """
    return Metrics(task, num_classes=num_classes, k=k)
