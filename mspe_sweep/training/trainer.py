"""Trainer: fit / train_epoch / eval_epoch / predict, the scheduler, checkpoints, hooks."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Sequence

import torch
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau

from .checkpoint import FORMAT_VERSION, CheckpointError, atomic_save, check_state_dict
from .checkpoint import read_checkpoint
from .losses import check_task, get_loss_fn
from .loops import EpochOutputs, Loop
from .metrics import get_metrics
from .reproducibility import capture_rng_state, restore_rng_state
from .utils import EarlyStopping, Monitor, ProgressDisplay, get_device

__all__ = ["Trainer"]

_LOGGER = logging.getLogger("mspe_sweep.training")

LogHook = Callable[[dict, int, str], None]
SCHEDULER_LEVELS = ("step", "epoch", "validation")



def call_hooks(callbacks: Sequence[Any], hook: str, trainer: Any, *args: Any) -> None:
    """Call ``hook(trainer, *args)`` on every callback that has it. Dispatch by name (as in
    Lightning Fabric's build-your-own-trainer): duck-typed callbacks work, and exceptions
    propagate untouched."""
    for callback in callbacks:
        method = getattr(callback, hook, None)
        if callable(method):
            method(trainer, *args)

class Trainer:
    """Train and evaluate a model on PyG batches or ``(x, y)`` tuples.

    Args:
        model: Called as ``model(batch)`` for PyG batches, ``model(x)`` for ``(x, y)`` tuples.
        optimizer: Optimizer over the model's parameters; None for an evaluation-only trainer
            (``eval_epoch``, ``predict``, ``load_checkpoint``; training raises ValueError).
        scheduler: Optional lr scheduler; stepped per optimizer step when its ``interval``
            attribute is ``"step"``, else per epoch (``ReduceLROnPlateau``: after each
            validation, with the monitored value); see :meth:`_step_scheduler`.
        loss_fn: ``loss_fn(pred, target)``; default ``get_loss_fn(task_type)``.
        metrics: ``metrics(preds, targets) -> dict`` over a whole epoch; default
            ``get_metrics(task_type)``.
        device: Default ``get_device()``. Model and batches are moved there.
        task_type: ``regression``, ``classification`` or ``edge_prediction``.
        grad_clip: Max total gradient norm, or None.
        mixed_precision: CUDA: fp16 autocast + GradScaler. CPU: bf16 autocast, no scaler.
        log_every: Call the ``"train"`` log hooks every this many optimizer steps.
        checkpoint_dir: Where ``fit`` writes ``last.pt``/``best.pt``; None for no checkpoints.
        accumulation_steps: Micro-batches per optimizer step (see ``GradientAccumulator``).
        callbacks: Objects with any of the ``Callback`` hook methods.
        progress: Show per-epoch progress on stderr.
        config: YAML text of the run's config, stored in every checkpoint under ``"config"``.

    Attributes:
        loop: The :class:`~mspe_sweep.training.loops.Loop` running the per-batch train and
            eval loops; it owns ``global_step``, gradient accumulation and the AMP scaler.
        epoch: Last completed epoch (1-based; 0 before training).
        global_step: Optimizer steps taken (counted by ``loop``).
        best_metric, best_epoch: Best monitored validation value and its epoch (None before).
        should_stop: Set True (e.g. by a callback) to end ``fit`` after the current epoch.
        stop_reason: ``"completed"``, ``"early_stopping"`` or ``"callback"`` after ``fit``.
        history: The ``fit`` history (see :meth:`fit`).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        scheduler: Any = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        metrics: Callable[[torch.Tensor, torch.Tensor], dict] | None = None,
        device: str | torch.device | None = None,
        task_type: str = "regression",
        grad_clip: float | None = None,
        mixed_precision: bool = False,
        log_every: int = 50,
        checkpoint_dir: str | os.PathLike | None = None,
        accumulation_steps: int = 1,
        callbacks: Sequence[Any] | None = None,
        progress: bool = True,
        config: str | None = None,
    ) -> None:
        self.task_type = check_task(task_type)
        if grad_clip is not None and grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {grad_clip}")
        if int(log_every) < 1:
            raise ValueError(f"log_every must be >= 1, got {log_every}")
        if config is not None and not isinstance(config, str):
            raise ValueError(
                f"config must be YAML text (str) or None, got {type(config).__name__}"
            )
        self.device = torch.device(device) if device is not None else get_device()
        self.model = model.to(self.device)  # in place: the optimizer's params stay valid
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.loss_fn = loss_fn if loss_fn is not None else get_loss_fn(task_type)
        self.metrics = metrics if metrics is not None else get_metrics(task_type)
        self.loop = Loop(
            self.model, optimizer, self.loss_fn, task_type=self.task_type, device=self.device,
            grad_clip=grad_clip, mixed_precision=mixed_precision,
            accumulation_steps=accumulation_steps, log_every=log_every,
        )
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.callbacks = list(callbacks or [])
        self.progress = progress
        self.config = config
        self.progress_display: ProgressDisplay | None = None
        self._log_hooks: list[LogHook] = []
        self._early_stopping: EarlyStopping | None = None
        self._monitor = Monitor("loss", minimize=True)
        self.epoch = 0
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self.should_stop = False
        self.stop_reason: str | None = None
        self.history: dict[str, list] = {}
        self.last_val_metrics: dict[str, float] = {}

    @property
    def global_step(self) -> int:
        """Optimizer steps taken (the loop counts them; checkpoints restore them)."""
        return self.loop.global_step

    @global_step.setter
    def global_step(self, value: int) -> None:
        self.loop.global_step = int(value)

    @property
    def scaler(self) -> torch.amp.GradScaler | None:
        """The AMP loss scaler (CUDA with ``mixed_precision`` only), owned by ``loop``."""
        return self.loop.scaler

    @property
    def amp_dtype(self) -> torch.dtype:
        """The autocast dtype: float16 on CUDA, bfloat16 on CPU."""
        return self.loop.amp_dtype

    def add_log_hook(self, fn: LogHook) -> None:
        """Register ``fn(metrics, step, prefix)``.

        Called with prefix ``"train"`` every ``log_every`` optimizer steps (metrics: running
        ``loss`` since the previous call, ``lr``) and with prefix ``"val"`` after each
        validation in ``fit`` (the bare-key val dict). ``step`` is the global optimizer step.
        """
        self._log_hooks.append(fn)

    def emit_log(self, metrics: dict[str, float], prefix: str) -> None:
        """Call every log hook with a copy of ``metrics``."""
        for fn in self._log_hooks:
            fn(dict(metrics), self.global_step, prefix)

    def _call(self, hook: str, *args: Any) -> None:
        call_hooks(self.callbacks, hook, self, *args)

    def autocast(self) -> ContextManager:
        """The autocast context for forward passes (a no-op without mixed precision)."""
        return self.loop.autocast()

    def _step_scheduler(self, level: str, value: float | None = None) -> None:
        """Step the scheduler if ``level`` is its moment: the one place that decides.

        ``level`` is ``"step"`` (after each optimizer step), ``"epoch"`` (after each training
        epoch) or ``"validation"`` (after each validation in ``fit``, with the monitored
        ``value``). A ``ReduceLROnPlateau`` steps at ``"validation"`` with ``value``; any other
        scheduler at its ``interval`` attribute (``"step"``, or ``"epoch"`` when absent).
        """
        assert level in SCHEDULER_LEVELS, level
        if self.scheduler is None:
            return
        if isinstance(self.scheduler, ReduceLROnPlateau):
            if level == "validation":
                self.scheduler.step(value)
        elif level == getattr(self.scheduler, "interval", "epoch"):
            self.scheduler.step()

    def _epoch_metrics(self, out: EpochOutputs, stage: str) -> dict[str, float]:
        if out.count == 0:
            raise ValueError(f"the {stage} loader yielded no batches")
        preds, targets = torch.cat(out.preds), torch.cat(out.targets)  # [N, ...] whole epoch
        metrics = {k: float(v) for k, v in self.metrics(preds, targets).items()}
        return {"loss": out.loss, **metrics}

    def train_epoch(self, loader: Iterable[Any]) -> dict[str, float]:
        """Train one epoch.

        Returns:
            ``loss`` (sample-weighted mean), every metric over the whole epoch, ``lr`` (first
            param group, as used by the epoch's last optimizer step), ``epoch_seconds`` and
            ``samples_per_second`` (graphs per second for PyG batches).

        Raises:
            NonFiniteLossError: On a NaN/inf loss.
        """
        if self.optimizer is None:
            raise ValueError("this Trainer has no optimizer (evaluation only): cannot train")
        self.model.train()
        start = time.perf_counter()
        out = self.loop.train(loader, self.epoch + 1, step_scheduler=self._step_scheduler,
                              emit_log=self.emit_log, progress=self.progress_display)
        self._step_scheduler("epoch")
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # honest wall time for queued kernels
        seconds = time.perf_counter() - start
        result = self._epoch_metrics(out, "train")
        result["lr"] = float(out.last_lr)
        result["epoch_seconds"] = seconds
        result["samples_per_second"] = out.samples / max(seconds, 1e-9)
        return result

    def eval_epoch(self, loader: Iterable[Any]) -> dict[str, float]:
        """Evaluate (eval mode, no grad): ``loss`` and every metric over the whole loader."""
        self.model.eval()
        return self._epoch_metrics(self.loop.evaluate(loader), "eval")

    def predict(self, loader: Iterable[Any]) -> torch.Tensor:
        """Return the raw model outputs for every batch, concatenated on dim 0, on the CPU.

        Batches may omit targets: ``(x,)``, a bare tensor, or a PyG batch without ``y``.
        """
        self.model.eval()
        out = self.loop.evaluate(loader, need_targets=False)
        if not out.preds:
            raise ValueError("the predict loader yielded no batches")
        return torch.cat(out.preds).cpu()

    def fit(
        self,
        train_loader: Iterable[Any],
        val_loader: Iterable[Any],
        epochs: int,
        metric_for_best: str = "loss",
        minimize_metric: bool = True,
        early_stopping: int | EarlyStopping | None = None,
        resume_from: str | os.PathLike | None = None,
    ) -> dict[str, list]:
        """Train for epochs ``1..epochs``, continuing after ``trainer.epoch``.

        A new trainer starts at epoch 1; with ``resume_from`` it continues after the
        checkpoint's epoch; a second ``fit`` on the same trainer continues after the epochs it
        already ran (the history keeps growing).

        Args:
            train_loader: Training batches.
            val_loader: Validation batches.
            epochs: Last epoch number (1-based; a resumed fit runs ``epoch + 1 .. epochs``).
            metric_for_best: Monitored validation metric, ``"mae"`` or ``"val/mae"``; decides
                ``best.pt`` and early stopping.
            minimize_metric: Whether lower is better.
            early_stopping: Patience in epochs (or an ``EarlyStopping``), or None.
            resume_from: A ``last.pt`` to restore everything from (model, optimizer, scheduler,
                scaler, counters, best, early stopping, history, RNG states).

        Returns:
            History, ``dict[str, list]`` with one entry per epoch (all epochs, resumed ones
            included): ``epoch``; ``train/<k>`` for every ``train_epoch`` key (``loss``,
            metrics, ``lr``, ``epoch_seconds``, ``samples_per_second``); ``val/<k>`` for
            every ``eval_epoch`` key (``loss``, metrics).

        Raises:
            ValueError: On an unknown ``metric_for_best`` (the message lists valid ones).
            CheckpointError: If ``resume_from`` cannot be read or does not fit.
        """
        if int(epochs) < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        names = getattr(self.metrics, "names", None)
        self._monitor = Monitor(metric_for_best, minimize_metric, names)
        self._check_plateau_mode()
        self._early_stopping = (
            EarlyStopping(early_stopping, mode=self._monitor.mode)
            if isinstance(early_stopping, int)
            else early_stopping
        )
        self.should_stop, self.stop_reason = False, None
        if resume_from is not None:
            self.load_checkpoint(resume_from)
        # A run that had early-stopped before it was interrupted stays done.
        stopped_early = bool(self._early_stopping is not None and self._early_stopping.stopped)
        first_epoch = int(epochs) + 1 if stopped_early else self.epoch + 1
        self.progress_display = ProgressDisplay(epochs, enabled=self.progress)
        try:
            self._call("on_fit_start")
            for epoch in range(first_epoch, int(epochs) + 1):
                train_metrics = self.train_epoch(train_loader)
                self._call("on_train_epoch_end", epoch, train_metrics)
                val_metrics = self.eval_epoch(val_loader)

                # Bookkeeping: the epoch now counts as completed.
                self.epoch, self.last_val_metrics = epoch, val_metrics
                self._record(epoch, train_metrics, val_metrics)
                self._call("on_validation_recorded", epoch, val_metrics)
                value = self._monitor.value(val_metrics)
                improved = self._monitor.improves(value, self.best_metric)
                if improved:
                    self.best_metric, self.best_epoch = value, epoch
                self._step_scheduler("validation", value)
                if self._early_stopping is not None and self._early_stopping(value):
                    self.should_stop = stopped_early = True
                self.emit_log(val_metrics, "val")

                # Checkpoints before on_eval_epoch_end: a pruner raising there can resume.
                if self.checkpoint_dir is not None:
                    if improved:
                        self._save("best")
                    self._save("last")
                self.progress_display.epoch(epoch, train_metrics, val_metrics)
                self._call("on_eval_epoch_end", epoch, val_metrics)
                if self.should_stop:
                    break
            if stopped_early:
                self.stop_reason = "early_stopping"
            else:
                self.stop_reason = "callback" if self.should_stop else "completed"
            self._call("on_fit_end", self.history)
            return {key: list(values) for key, values in self.history.items()}
        finally:
            self.progress_display.close()
            self.progress_display = None

    def _check_plateau_mode(self) -> None:
        wanted = self._monitor.mode
        if isinstance(self.scheduler, ReduceLROnPlateau) and self.scheduler.mode != wanted:
            raise ValueError(
                f"plateau scheduler mode {self.scheduler.mode!r} does not match "
                f"minimize_metric={self._monitor.minimize} (use mode={wanted!r})"
            )

    def _record(self, epoch: int, train: dict[str, float], val: dict[str, float]) -> None:
        self.history.setdefault("epoch", []).append(epoch)
        for stage, metrics in (("train", train), ("val", val)):
            for key, value in metrics.items():
                self.history.setdefault(f"{stage}/{key}", []).append(float(value))

    def _save(self, kind: str) -> None:
        assert self.checkpoint_dir is not None
        path = self.checkpoint_dir / f"{kind}.pt"
        self.save_checkpoint(path)
        self._call("on_checkpoint_saved", path, kind)

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        """Write the full training state to ``path`` atomically (temp file + ``os.replace``).

        Only tensors and plain Python values are stored, so the file loads with
        ``torch.load(weights_only=True)``; see the README for the keys.
        """
        stopper = self._early_stopping
        checkpoint = {
            "format_version": FORMAT_VERSION,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "metrics": dict(self.last_val_metrics),
            "monitor": {"metric": self._monitor.key, "minimize": self._monitor.minimize},
            "history": {key: list(values) for key, values in self.history.items()},
            "early_stopping": stopper.state_dict() if stopper is not None else None,
            "rng": capture_rng_state(),
            "task_type": self.task_type,
            "config": self.config,
        }
        return atomic_save(checkpoint, path)

    def load_checkpoint(self, path: str | os.PathLike) -> dict[str, Any]:
        """Restore the state written by :meth:`save_checkpoint` (RNG states included).

        Returns:
            The checkpoint dict.

        Raises:
            CheckpointError: If the file is missing/corrupt, or its tensors do not fit the
                model (naming the first mismatching key and both shapes) or the optimizer.
        """
        path = Path(path)
        ckpt = read_checkpoint(path, map_location=self.device)
        check_state_dict(path, self.model.state_dict(), ckpt["model"])
        self.model.load_state_dict(ckpt["model"])
        if self.optimizer is not None and ckpt.get("optimizer") is not None:
            try:
                self.optimizer.load_state_dict(ckpt["optimizer"])
            except (ValueError, KeyError) as exc:
                raise CheckpointError(f"{path}: optimizer state does not fit: {exc}") from exc
        if self.scheduler is not None and ckpt.get("scheduler") is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.global_step = int(ckpt["epoch"]), int(ckpt["global_step"])
        self.best_metric, self.best_epoch = ckpt["best_metric"], ckpt["best_epoch"]
        self.last_val_metrics = dict(ckpt.get("metrics") or {})
        self.history = {key: list(values) for key, values in (ckpt.get("history") or {}).items()}
        saved_monitor = (ckpt.get("monitor") or {}).get("metric")
        if saved_monitor not in (None, self._monitor.key):
            _LOGGER.warning(
                "%s was monitoring %s, this fit monitors val/%s: best_metric is not comparable",
                path, saved_monitor, self._monitor.name,
            )
        if self._early_stopping is not None and ckpt.get("early_stopping"):
            self._early_stopping.load_state_dict(ckpt["early_stopping"])
        if ckpt.get("rng") is not None:
            restore_rng_state(ckpt["rng"])
        return ckpt
