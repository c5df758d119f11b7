"""Samplers and pruners from a study file's ``sampler`` / ``pruner`` entries.

An entry is a type name (``tpe``) or a mapping ``{type: tpe, <constructor kwargs>}``. Kwargs
are checked against the Optuna constructor's signature, so a typo is a one-line
:class:`~mspe_sweep.errors.UserError`, not a ``TypeError`` deep inside a worker.

Defaults, and why:

- ``tpe``: ``multivariate=True, group=True`` (joint model per sub-space, which handles the
  conditional params of :mod:`mspe_sweep.sweep.space`) and ``constant_liar=True`` (parallel
  workers do not all pile onto the same promising point).
- ``median`` (the default pruner) and ``percentile``: ``n_startup_trials=5`` (no pruning until
  5 trials have finished, so the median means something) and ``n_warmup_steps=5``. One step
  is one validation epoch; the first epochs run under learning-rate warm-up and are too noisy
  to judge a trial by.
- ``patient`` wraps another pruner: ``{type: patient, patience: 2, wrapped: {type: median}}``.

Every worker process needs its own sampler seed, or all of them draw the same random start-up
trials: pass ``worker=<index>`` and the seed becomes ``seed + worker``.

Optuna marks some of these options experimental (``group``, ``QMCSampler``, ...); we choose
them deliberately, so their ``ExperimentalWarning`` is silenced at construction.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning

from mspe_sweep.errors import UserError
from mspe_sweep.sweep.space import discrete_values
from mspe_sweep.text import one_line

_MEDIAN_DEFAULTS = {"n_startup_trials": 5, "n_warmup_steps": 5}


@dataclass(frozen=True)
class ComponentSpec:
    """A sampler or pruner as written in a study file.

    Attributes:
        type: The type name, e.g. ``tpe`` or ``median``.
        kwargs: Constructor kwargs as written (``patient`` keeps ``wrapped`` here).
    """

    type: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: Any, where: str) -> ComponentSpec:
        """Reads ``tpe`` or ``{type: tpe, ...}``; ``where`` names the file and key for errors."""
        if isinstance(value, str):
            return cls(value, {})
        if isinstance(value, Mapping) and isinstance(value.get("type"), str):
            return cls(value["type"], {k: v for k, v in value.items() if k != "type"})
        raise UserError(f"{where}: expected a type name or a mapping with a `type` key, "
                        f"got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """The entry as a plain mapping, for logging."""
        return {"type": self.type, **self.kwargs}


def _samplers() -> dict[str, tuple[Callable[..., Any], tuple[str, ...]]]:
    # Values: constructor, modules it needs at run time (imported lazily with a hint).
    s = optuna.samplers
    return {
        "tpe": (s.TPESampler, ()),
        "random": (s.RandomSampler, ()),
        "cmaes": (s.CmaEsSampler, ("cmaes",)),
        "gp": (s.GPSampler, ("scipy", "torch")),
        "qmc": (s.QMCSampler, ("scipy",)),
        "grid": (s.GridSampler, ()),
    }


def _pruners() -> dict[str, Callable[..., Any]]:
    p = optuna.pruners
    return {
        "median": p.MedianPruner,
        "percentile": p.PercentilePruner,
        "hyperband": p.HyperbandPruner,
        "successive_halving": p.SuccessiveHalvingPruner,
        "wilcoxon": p.WilcoxonPruner,
        "threshold": p.ThresholdPruner,
        "patient": p.PatientPruner,
        "none": p.NopPruner,
    }


SAMPLER_TYPES = tuple(_samplers())
PRUNER_TYPES = tuple(_pruners())


def _construct(kind: str, name: str, cls: Callable[..., Any], kwargs: dict, where: str) -> Any:
    params = inspect.signature(cls).parameters
    shown = {"wrapped_pruner": "wrapped", "search_space": None}
    valid = sorted(filter(None, (shown.get(n, n) for n in params)))
    for key in kwargs:
        if key not in params:
            raise UserError(f"{where}: unknown argument {key!r} for {kind} {name!r}; "
                            f"valid: {', '.join(valid) or '(none)'}")
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as exc:
        raise UserError(f"{where}: {kind} {name!r}: {one_line(exc)}") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: bad arguments for {kind} {name!r}: {one_line(exc)}") from exc


def _require(modules: Sequence[str], name: str, where: str) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise UserError(f"{where}: the {name!r} sampler needs the {module!r} package: "
                            f"pip install {module}") from exc


def _grid_space(params: Sequence[Any], where: str) -> dict[str, list[Any]]:
    space = {}
    for param in params:
        values = discrete_values(param.distribution)
        if values is None:
            raise UserError(f"{where}: grid sampler needs discrete params (choice or range), "
                            f"but params.{param.key} is continuous")
        if param.when:
            raise UserError(f"{where}: grid sampler cannot search conditional params "
                            f"(params.{param.key} has `when`); use tpe or random")
        space[param.key] = values
    return space


def build_sampler(
    spec_sampler: ComponentSpec | str | Mapping[str, Any],
    seed: int | None,
    params: Sequence[Any],
    *,
    worker: int = 0,
    where: str = "sampler",
) -> optuna.samplers.BaseSampler:
    """Builds the study's sampler.

    Args:
        spec_sampler: The ``sampler`` entry (type name, mapping, or parsed spec).
        seed: The study seed; ``None`` for an unseeded sampler.
        params: The study's :class:`~mspe_sweep.sweep.spec.ParamSpec` list (grid uses it).
        worker: Index of this worker process; offsets the seed so workers differ.
        where: File and key named in error messages.

    Returns:
        The sampler.

    Raises:
        UserError: Unknown type, bad kwargs, a missing optional package, or a grid over
            continuous or conditional params.
    """
    spec = ComponentSpec.parse(spec_sampler, where) if not isinstance(
        spec_sampler, ComponentSpec) else spec_sampler
    table = _samplers()
    if spec.type not in table:
        raise UserError(f"{where}: unknown sampler {spec.type!r}; valid: {', '.join(table)}")
    cls, needs = table[spec.type]
    _require(needs, spec.type, where)
    kwargs = dict(spec.kwargs)
    if "search_space" in kwargs:
        raise UserError(f"{where}: do not set search_space; the grid comes from `params`")
    kwargs.setdefault("seed", None if seed is None else seed + worker)
    if spec.type == "tpe":
        kwargs = {"multivariate": True, "group": True, "constant_liar": True, **kwargs}
    if spec.type == "grid":
        kwargs["search_space"] = _grid_space(params, where)
    return _construct("sampler", spec.type, cls, kwargs, where)


def derive_seed(study_seed: int, *salt: object) -> int:
    """A seed from the study seed and a salt: a trial's number (its ORIGINAL number, so it is
    stable on retry), the count of trials a resumed study already has (for its sampler), or a
    confirmation's ``"confirm", config key, index``."""
    text = ":".join(str(part) for part in (study_seed, *salt))
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:4], "little") % (2**31 - 1)


def study_sampler(spec_sampler: ComponentSpec, seed: int, params: Sequence[Any], *,
                  existing_trials: int, worker: int) -> optuna.samplers.BaseSampler:
    """The sampler of one worker of a study that already has ``existing_trials`` trials.

    A resumed study must not replay the first run's random draws: its seed moves on with the
    study's progress.
    """
    if existing_trials:
        seed = derive_seed(seed, existing_trials)
    return build_sampler(spec_sampler, seed, params, worker=worker)


def build_pruner(
    spec_pruner: ComponentSpec | str | Mapping[str, Any], *, where: str = "pruner"
) -> optuna.pruners.BasePruner:
    """Builds the study's pruner.

    Args:
        spec_pruner: The ``pruner`` entry (type name, mapping, or parsed spec).
        where: File and key named in error messages.

    Returns:
        The pruner.

    Raises:
        UserError: Unknown type or bad kwargs.
    """
    spec = ComponentSpec.parse(spec_pruner, where) if not isinstance(
        spec_pruner, ComponentSpec) else spec_pruner
    table = _pruners()
    if spec.type not in table:
        raise UserError(f"{where}: unknown pruner {spec.type!r}; valid: {', '.join(table)}")
    kwargs = dict(spec.kwargs)
    if spec.type in ("median", "percentile"):
        kwargs = {**_MEDIAN_DEFAULTS, **kwargs}
    if spec.type == "patient":
        if "wrapped_pruner" in kwargs:
            raise UserError(f"{where}: write the inner pruner as `wrapped: {{type: median}}`")
        wrapped = kwargs.pop("wrapped", None)
        kwargs["wrapped_pruner"] = (
            None if wrapped is None else build_pruner(wrapped, where=f"{where}.wrapped")
        )
    return _construct("pruner", spec.type, table[spec.type], kwargs, where)
