"""One validation pass over a composed run config, before any work is done.

The checks come from two places only: the schema's per-field :class:`~mspe_sweep.schema.Rule`
(ranges, finiteness, patterns) and the factories' own option lists, which the rules name.
A handful of checks span several keys (a warm-up schedule's floor above its peak, attention
heads that do not divide the width); they live here, next to the walk over the schema.

Every message names the full key, the value and what would be valid, e.g.
``training.optimizer.lr=-1.0: must be > 0``.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import re
from collections.abc import Mapping
from functools import cache
from typing import Any, Iterator

from omegaconf import DictConfig, OmegaConf

from mspe_sweep.errors import UserError
from mspe_sweep.schema import Rule, RunConfig

TASK = "regression"


def monitor_options() -> list[str]:
    """Valid ``training.monitor`` values: the validation metrics and loss, with or without
    the ``val/`` prefix (the Trainer accepts both)."""
    from mspe_sweep.training.metrics import METRIC_NAMES

    names = ["loss", *METRIC_NAMES[TASK]]
    return [f"val/{name}" for name in names] + names


def loss_options() -> list[str]:
    """Valid ``training.loss`` values for the regression task."""
    from mspe_sweep.training.losses import LOSSES

    return list(LOSSES[TASK])


@cache
def _options(source: str) -> tuple[str, ...]:
    if source.startswith("|"):
        return tuple(source[1:].split("|"))
    module, _, name = source.partition(":")
    found = getattr(importlib.import_module(module), name)
    if callable(found):
        found = found()
    return tuple(found)  # a mapping yields its keys


def _walk(schema: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """``(dotted key, field, section dataclass or None)`` for every field, depth first."""
    for f in dataclasses.fields(schema):
        key = f"{prefix}{f.name}"
        kind = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        section = kind if dataclasses.is_dataclass(kind) else None
        yield key, f, section
        if section is not None:
            yield from _walk(section, f"{key}.")


def rules(schema: type = RunConfig) -> Iterator[tuple[str, Rule]]:
    """Every ``(dotted key, rule)`` of a schema dataclass, nested sections included."""
    for key, f, _ in _walk(schema):
        if "rule" in f.metadata:
            yield key, f.metadata["rule"]


def section_key(class_name: str, schema: type = RunConfig) -> tuple[str, str] | None:
    """A section's key and its first field, from its dataclass's name: ``OptimizerConfig``
    -> ``("training.optimizer", "type")`` (for "you gave a section a value" messages)."""
    for key, _, section in _walk(schema):
        if section is not None and section.__name__ == class_name:
            return key, dataclasses.fields(section)[0].name
    return None


@cache
def rule_for(key: str, schema: type = RunConfig) -> Rule | None:
    """The rule of one dotted config key, or None when only its type is checked."""
    return dict(rules(schema)).get(key)


def problem(key: str, value: Any, schema: type = RunConfig) -> str | None:
    """What is wrong with ``value`` for ``key`` (one line without the key), or None."""
    checks = rule_for(key, schema)
    if checks is None or value is None:
        return None
    if checks.options is not None:
        valid = _options(checks.options)
        return None if value in valid else f"unknown option (valid: {', '.join(valid)})"
    if checks.pattern is not None:
        ok = isinstance(value, str) and re.fullmatch(checks.pattern, value)
        return None if ok else f"not valid (valid: {checks.hint or checks.pattern})"
    return _range_problem(checks, value)


def _range_problem(checks: Rule, value: Any) -> str | None:
    bounds = [(">=", checks.ge), (">", checks.gt), ("<=", checks.le), ("<", checks.lt)]
    wanted = " and ".join(f"{op} {_number(bound)}" for op, bound in bounds if bound is not None)
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number {wanted}".rstrip()
    failed = ((checks.ge is not None and value < checks.ge)
              or (checks.gt is not None and value <= checks.gt)
              or (checks.le is not None and value > checks.le)
              or (checks.lt is not None and value >= checks.lt))
    return f"must be {wanted}" if failed else None


def _number(bound: float) -> str:
    return "2**32" if bound == 2**32 else f"{bound:g}"


def check(key: str, value: Any, schema: type = RunConfig) -> None:
    """Raise :class:`UserError` naming ``key=value`` when the value breaks its rule."""
    reason = problem(key, value, schema)
    if reason:
        raise UserError(f"{key}={_show(value)}: {reason}")


def _show(value: Any) -> str:
    return "null" if value is None else str(value)


def validate_run_config(cfg: DictConfig | Mapping) -> None:
    """Check every ruled key of a composed run config, then the rules that span keys.

    Raises:
        UserError: The first problem found, as one line naming the key.
    """
    check_rules(cfg, RunConfig)
    _check_across_keys(cfg)


def check_rules(cfg: DictConfig | Mapping, schema: type) -> None:
    """Check every ruled key of a config typed by ``schema`` (a run or the driver's config).

    Raises:
        UserError: The first value that breaks its rule, as one line naming the key.
    """
    for key, _ in rules(schema):
        check(key, OmegaConf.select(cfg, key) if isinstance(cfg, DictConfig)
              else _select(cfg, key), schema)


def _select(cfg: Mapping, key: str) -> Any:
    for part in key.split("."):
        cfg = cfg.get(part) if isinstance(cfg, Mapping) else None
    return cfg


def _check_across_keys(cfg: Any) -> None:
    from mspe_sweep.dataset.encodings import PESpec

    sched, opt = cfg["training"]["scheduler"], cfg["training"]["optimizer"]
    # get_scheduler refuses this too, for callers of the training API without a config
    # (training/ imports nothing of ours); here it is named by its keys, before any work.
    if sched["type"] == "cosine_warmup" and sched["min_lr"] > opt["lr"]:
        raise UserError(f"training.scheduler.min_lr={sched['min_lr']}: must be <= "
                        f"training.optimizer.lr ({opt['lr']}), the peak the cosine decays from")
    model = cfg["model"]
    if model["name"] == "graph_transformer" and model["hidden_dim"] % model["heads"]:
        raise UserError(f"model.heads={model['heads']}: must divide model.hidden_dim "
                        f"({model['hidden_dim']})")
    pe = OmegaConf.to_container(cfg["pe"]) if isinstance(cfg["pe"], DictConfig) else cfg["pe"]
    try:
        PESpec.from_config(pe)
    except ValueError as exc:
        raise UserError(str(exc)) from None
