"""Study files (``studies/<name>.yaml``) -> a validated, typed :class:`StudySpec`.

A study file says how to SEARCH; ``configs/`` describe one run. Everything a user can get
wrong in a study file is caught here, before any trial starts or any storage row is written,
as a one-line :class:`~mspe_sweep.errors.UserError` naming the file and the key. Example::

    name: zinc-lr-pe
    direction: minimize
    metric: val/mae
    n_trials: 40            # total finished (COMPLETE + PRUNED) trials of the study
    fixed: [model=graph_transformer, training.epochs=30]
    params:
      training.optimizer.lr: tag(log, interval(1e-4, 3e-3))
      pe: choice(rwse, multiscale)
      pe.rwse.steps: {values: 'range(8, 33, 8)', when: {pe: [rwse]}}   # quote inside {}
    enqueue:                # known configurations, tried first (mspe_sweep/sweep/enqueue.py)
      - {training.optimizer.lr: 0.001, pe: rwse, pe.rwse.steps: 16}

A bare metric name (``mae``) means ``val/mae`` when that is a known metric.
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import optuna
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import Container, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from optuna.distributions import BaseDistribution, CategoricalDistribution

# Private module, but the only place the column size is stated; a rename fails at import.
from optuna.storages._rdb.models import MAX_INDEXED_STRING_LENGTH

from mspe_sweep.errors import UserError
from mspe_sweep.sweep import factories
from mspe_sweep.sweep.enqueue import parse_enqueue
from mspe_sweep.sweep.factories import ComponentSpec
from mspe_sweep.sweep.space import (
    GrammarError,
    discrete_values,
    parse_distribution,
    parse_when,
)
from mspe_sweep.text import one_line
from mspe_sweep.schema import RunConfig
from mspe_sweep.validation import check, validate_run_config

DIRECTIONS = ("minimize", "maximize")
# The size of Optuna's study_name column (its RDB schema): a longer name fails on insert.
MAX_NAME_LENGTH = MAX_INDEXED_STRING_LENGTH
_DEFAULTS: dict[str, Any] = {
    "description": None, "timeout": None, "seed": 0, "sampler": "tpe", "pruner": "median",
    "fixed": [], "max_consecutive_failures": 5, "keep_checkpoints": 3,
    "trial_timeout": None, "epoch_timeout": None, "enqueue": [],
}
_REQUIRED = ("name", "direction", "metric", "n_trials", "params")
VALID_KEYS = tuple(sorted((*_REQUIRED, *_DEFAULTS)))
_MISSING = object()


def _is_int(value: Any, minimum: int | None = None) -> bool:
    ok = isinstance(value, int) and not isinstance(value, bool)
    return ok and (minimum is None or value >= minimum)


def _seconds_or_none(value: Any) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return value is None or (number and value > 0)


_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": (lambda v: isinstance(v, str) and bool(v.strip()) and len(v) <= MAX_NAME_LENGTH,
             f"a non-empty string of at most {MAX_NAME_LENGTH} characters (the storage's "
             "study-name column)"),
    "direction": (lambda v: v in DIRECTIONS, " or ".join(DIRECTIONS)),
    "n_trials": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "timeout": (_seconds_or_none, "a number of seconds > 0, or null"),
    # Hang limits of one trial (see mspe_sweep/sweep/watchdog.py).
    "trial_timeout": (_seconds_or_none, "a number of seconds > 0, or null"),
    "epoch_timeout": (_seconds_or_none, "a number of seconds > 0, or null"),
    # Samplers take numpy seeds (0 <= seed < 2**32); each local worker adds its index.
    "seed": (lambda v: _is_int(v, 0) and v < 2**31, "an integer between 0 and 2**31 - 1"),
    "description": (lambda v: v is None or isinstance(v, str), "text"),
    "fixed": (lambda v: isinstance(v, list), "a list of overrides like 'training.epochs=30'"),
    "max_consecutive_failures": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "keep_checkpoints": (lambda v: _is_int(v, 0), "an integer >= 0"),
}


@dataclass(frozen=True)
class ParamSpec:
    """One searched run-config key.

    Attributes:
        key: Run-config key or config group, e.g. ``training.optimizer.lr`` or ``pe``.
        distribution: The Optuna distribution parsed from ``grammar``.
        when: ``{earlier param key: allowed values}``; empty when unconditional.
        grammar: The grammar text as written in the study file.
    """

    key: str
    distribution: BaseDistribution
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    grammar: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: key, distribution (Optuna's JSON form), grammar and condition."""
        dist = json.loads(optuna.distributions.distribution_to_json(self.distribution))
        when = {k: list(v) for k, v in self.when.items()}
        return {"key": self.key, "distribution": dist, "grammar": self.grammar, "when": when}


@dataclass(frozen=True)
class StudySpec:
    """A validated study file. See the module docstring for the file format."""

    path: Path
    name: str
    direction: str
    metric: str
    n_trials: int
    params: tuple[ParamSpec, ...]
    fixed: tuple[str, ...] = ()
    timeout: float | None = None
    seed: int = 0
    sampler: ComponentSpec = ComponentSpec("tpe")
    pruner: ComponentSpec = ComponentSpec("median")
    description: str | None = None
    max_consecutive_failures: int = 5
    keep_checkpoints: int = 3
    trial_timeout: float | None = None
    epoch_timeout: float | None = None
    enqueue: tuple[dict[str, Any], ...] = ()

    def fingerprint_payload(self) -> dict[str, Any]:
        """What defines the meaning of the study's trial values (for the identity guard).

        Covers the search space (params, distributions, conditions), the ``fixed`` overrides,
        metric and direction; not the budget, timeouts, sampler, pruner or ``enqueue`` (known
        configurations to try first), which a resumed study may change without invalidating
        its finished trials.
        """
        return {
            "direction": self.direction,
            "metric": self.metric,
            "fixed": list(self.fixed),
            "params": [p.to_dict() for p in self.params],
        }

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON-able data, for logging, MLflow and worker plans."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(path=str(self.path), sampler=self.sampler.to_dict(), fixed=list(self.fixed),
                    pruner=self.pruner.to_dict(), params=[p.to_dict() for p in self.params],
                    enqueue=[dict(e) for e in self.enqueue])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StudySpec:
        """The spec back from :meth:`to_dict` (already validated: nothing is checked)."""
        params = tuple(
            ParamSpec(p["key"], optuna.distributions.json_to_distribution(
                json.dumps(p["distribution"])), {k: tuple(v) for k, v in p["when"].items()},
                p["grammar"]) for p in data["params"])
        return cls(**{**data, "path": Path(data["path"]), "params": params,
                      "fixed": tuple(data["fixed"]),
                      "enqueue": tuple(dict(e) for e in data.get("enqueue", ())),
                      "sampler": ComponentSpec.parse(data["sampler"], "sampler"),
                      "pruner": ComponentSpec.parse(data["pruner"], "pruner")})


def find_study_file(name: str, studies_dir: Path) -> Path:
    """Resolves ``study=<name>`` to ``<studies_dir>/<name>.yaml``, or ``study=<path>`` (a name
    with a ``/`` or a ``.yaml``/``.yml`` suffix) to that file.

    Raises:
        UserError: No such file (the message lists the available studies), or a directory.
    """
    available = ", ".join(sorted(p.stem for p in Path(studies_dir).glob("*.yaml"))) or "(none)"
    if "/" in name or Path(name).suffix in (".yaml", ".yml"):
        path = Path(name)
        if path.is_dir():
            raise UserError(f"study={name}: is a directory; give a study file (<dir>/<name>.yaml)"
                            f" or a study name ({available})")
        if not path.is_file():
            raise UserError(f"study={name}: no such file; give an existing study file or a "
                            f"study name ({available})")
        return path
    candidate = Path(studies_dir) / f"{name}.yaml"
    if not candidate.is_file():
        raise UserError(f"study={name}: no such study in {studies_dir}/ (available: "
                        f"{available}; or give a path to a .yaml file)")
    return candidate


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that rejects duplicate mapping keys (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_study_file(path: Path) -> dict[str, Any]:
    """The study file's keys with their defaults filled in; only the keys are checked.

    Raises:
        UserError: Unreadable file, invalid YAML, unknown or missing keys.
    """
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (safe loader)
    except OSError as exc:
        raise UserError(f"{path}: cannot read study file: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file; a study file is UTF-8 YAML "
                        "(see studies/zinc.yaml)") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: invalid YAML: {one_line(exc)}") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: a study file is a mapping with keys {', '.join(VALID_KEYS)}")
    unknown = sorted(set(map(str, data)) - set(VALID_KEYS))
    if unknown:
        raise UserError(f"{path}: unknown key(s) {', '.join(unknown)}; valid keys: "
                        f"{', '.join(VALID_KEYS)}")
    missing = [k for k in _REQUIRED if data.get(k) is None]
    if missing:
        raise UserError(f"{path}: missing required key(s) {', '.join(missing)}")
    return {**_DEFAULTS, **{k: v for k, v in data.items() if v is not None}}


def _override_keys(path: Path, key: str, overrides: Sequence[str], strict: bool) -> dict:
    parser, keys = OverridesParser.create(), {}
    for text in overrides:
        try:
            override = parser.parse_override(str(text))
        except HydraException as exc:
            if strict:
                raise UserError(f"{path}: {key}: cannot parse {text!r}: {one_line(exc)}") from exc
            continue
        if strict and override.is_sweep_override():
            raise UserError(f"{path}: {key}: {text!r} is a search; move it to `params`")
        if strict and override.key_or_group in keys:
            raise UserError(f"{path}: {key}: {override.key_or_group!r} is set twice")
        keys[override.key_or_group] = str(text)
    return keys


def _parse_params(
    path: Path, raw: Any, groups: Mapping[str, Sequence[str]]
) -> tuple[ParamSpec, ...]:
    if not isinstance(raw, Mapping) or not raw:
        raise UserError(f"{path}: params: must be a non-empty mapping of key -> search")
    params: dict[str, ParamSpec] = {}
    for key, entry in raw.items():
        where = f"{path}: params.{key}"
        when: Any = None
        if isinstance(entry, Mapping):
            if set(entry) - {"values", "when"} or "values" not in entry:
                raise UserError(f"{where}: a mapping entry takes keys `values` (required) and "
                                f"`when`, got {sorted(map(str, entry))}; inside {{...}} quote "
                                "the search: {values: 'range(8, 33, 8)', when: {pe: [rwse]}}")
            entry, when = entry["values"], entry.get("when")
        if not isinstance(entry, str):
            raise UserError(f"{where}: {entry!r} is a plain value, not a search; move "
                            f"'{key}={entry}' to `fixed`")
        try:
            dist = parse_distribution(str(key), entry)
        except GrammarError as exc:
            raise UserError(f"{where}: {exc}") from exc
        if key in groups:
            options = ", ".join(groups[key])
            if not isinstance(dist, CategoricalDistribution):
                raise UserError(f"{where}: a config group is searched with choice(...) of its "
                                f"options: {options}")
            bad = [c for c in dist.choices if c not in groups[key]]
            if bad:
                raise UserError(f"{where}: no such config group option(s) {bad}; valid: "
                                f"{options}")
        try:
            cond = {} if when is None else parse_when(
                when, {k: p.distribution for k, p in params.items()})
        except GrammarError as exc:
            raise UserError(f"{where}: {exc}") from exc
        params[key] = ParamSpec(str(key), dist, cond, entry)
    return tuple(params.values())


def _leaf_keys(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=False)
    if not isinstance(node, dict):
        return [prefix.rstrip(".")]
    return [k for key, child in node.items() for k in _leaf_keys(child, f"{prefix}{key}.")]


def _misfit(conf: DictConfig, param: ParamSpec) -> str | None:
    """Tries the search's values on a copy of a (typed) config; describes the first misfit.

    Each value must fit the key's type and pass the run config's validation (its range and
    options, and the checks across keys), so a search region that would make trials fail
    (``interval(-1, 1)`` for a learning rate) is refused before the study starts. A range is
    tried at its ends, which is enough for the schema's bounds.
    """
    dist = param.distribution
    values = discrete_values(dist) or [dist.low, dist.high]
    trial_conf = copy.deepcopy(conf)
    OmegaConf.set_readonly(trial_conf, False)
    for value in values[:64]:
        try:
            OmegaConf.update(trial_conf, param.key, value, merge=False)
        except OmegaConfBaseException as exc:
            reason = one_line(str(exc).splitlines()[0])
            hint = "; integer keys take choice, range or tag(int, interval(...))" if (
                "Integer" in reason) else ""
            return f"searched value {value!r} does not fit the run config's type ({reason}){hint}"
        try:
            check(param.key, value)
            if OmegaConf.get_type(trial_conf) is RunConfig:  # a whole run config: all checks
                validate_run_config(trial_conf)
        except UserError as exc:
            return f"searched value {value!r} is not valid: {exc}"
    return None


def _compose(compose: Callable[[list[str]], DictConfig], overrides: list[str], where: str,
             show: bool = True):
    """``compose(overrides)``; ``show=False`` leaves the overrides out of the error message
    (when ``where`` already names them)."""
    try:
        return compose(overrides)
    except (HydraException, UserError) as exc:
        listed = f" with {overrides}" if show else ""
        raise UserError(f"{where}: cannot compose the run config{listed}: "
                        f"{one_line(exc)}") from exc


def _check_keys(
    path: Path,
    params: Sequence[ParamSpec],
    cfg: DictConfig,
    groups: Mapping[str, Sequence[str]],
    compose: Callable[[list[str]], DictConfig],
    base: list[str],
) -> None:
    by_key = {p.key: p for p in params}
    for param in params:
        where = f"{path}: params.{param.key}"
        if param.key in groups:
            continue
        # A key under a searched group (pe.walk_length under pe) exists only for some of the
        # group's options: check it in the config composed with each option it can run with.
        owners = [g for g in groups if param.key.startswith(f"{g}.") and g in by_key]
        variants = [(f"{g}={o}",) for g in owners
                    for o in param.when.get(g, by_key[g].distribution.choices)] or [()]
        for extra in variants:
            conf = _compose(compose, [*base, *extra], where) if extra else cfg
            node = OmegaConf.select(conf, param.key, default=_MISSING, throw_on_missing=False)
            label = f" with {extra[0]}" if extra else ""
            if node is _MISSING:
                close = difflib.get_close_matches(param.key, _leaf_keys(conf), n=3)
                hint = f"did you mean {', '.join(close)}?" if close else "check the spelling"
                raise UserError(f"{where}: no such key in the composed run config{label}; {hint}")
            if isinstance(node, Container):
                raise UserError(f"{where}: names a config section, not a value; valid groups: "
                                f"{', '.join(groups) or '(none)'}")
            misfit = _misfit(conf, param)
            if misfit:
                raise UserError(f"{where}: {misfit}")


def load_study(
    path: Path,
    *,
    compose: Callable[[list[str]], DictConfig],
    groups: Mapping[str, Sequence[str]],
    known_metrics: Collection[str],
    cli_overrides: Sequence[str] = (),
    cli_settings: Mapping[str, Any] | None = None,
) -> StudySpec:
    """Reads and validates a study file.

    Args:
        path: The study file.
        compose: ``overrides -> DictConfig`` (raising ``HydraException`` or ``UserError`` on
            bad overrides). It composes the run config with ``fixed`` and the command-line run
            overrides that the searched keys are checked against, and, for keys under a
            searched group (``pe.rwse.steps`` with ``pe`` searched), the config with each
            option they can run with.
        groups: Config group name -> available option names (``{"pe": ["rwse", ...]}``).
        known_metrics: Metric names the objective can report (``val/mae``, ...).
        cli_overrides: Run overrides given on the command line; searched keys must not be set.
        cli_settings: Study keys given on the command line (``study.n_trials=5`` ->
            ``{"n_trials": 5}``; ``n_trials``, ``timeout``, ``seed``, ``trial_timeout``,
            ``epoch_timeout``): they replace the file's
            and are checked the same way.

    Returns:
        The spec.

    Raises:
        UserError: Any mistake in the file, as one line naming the file and key.
    """
    path = Path(path)
    data = read_study_file(path)
    for key, value in (cli_settings or {}).items():
        valid, what = _CHECKS[key]
        if not valid(value):
            raise UserError(f"study.{key}={value}: must be {what}")
        data[key] = value
    for key, (valid, what) in _CHECKS.items():
        if not valid(data[key]):
            raise UserError(f"{path}: {key}: must be {what}, got {data[key]!r}")
    metric = str(data["metric"])
    if metric not in known_metrics and f"val/{metric}" in known_metrics:
        metric = f"val/{metric}"
    if metric not in known_metrics:
        raise UserError(f"{path}: metric: unknown {metric!r}; valid: "
                        f"{', '.join(sorted(known_metrics))}")
    fixed = tuple(str(x) for x in data["fixed"])
    fixed_keys = _override_keys(path, "fixed", fixed, strict=True)
    cli_keys = _override_keys(path, "command line", cli_overrides, strict=False)
    params = _parse_params(path, data["params"], groups)
    for param in params:
        for source, keys in (("`fixed`", fixed_keys), ("the command line", cli_keys)):
            if param.key in keys:
                raise UserError(f"{path}: params.{param.key}: also set in {source} "
                                f"({keys[param.key]!r}); search it or fix it, not both")
    enqueue = parse_enqueue(path, data["enqueue"], params)
    base = [*fixed, *cli_overrides]
    cfg = _compose(compose, base, f"{path}: fixed" + (" + command line" if cli_overrides else ""),
                   show=False)
    _check_keys(path, params, cfg, groups, compose, base)
    sampler = ComponentSpec.parse(data["sampler"], f"{path}: sampler")
    pruner = ComponentSpec.parse(data["pruner"], f"{path}: pruner")
    factories.build_sampler(sampler, data["seed"], params, where=f"{path}: sampler")
    factories.build_pruner(pruner, where=f"{path}: pruner")
    return StudySpec(
        path=path, name=data["name"], direction=data["direction"], metric=metric,
        n_trials=data["n_trials"], params=params, fixed=fixed, timeout=data["timeout"],
        seed=data["seed"], sampler=sampler, pruner=pruner, description=data["description"],
        max_consecutive_failures=data["max_consecutive_failures"],
        keep_checkpoints=data["keep_checkpoints"],
        trial_timeout=data["trial_timeout"], epoch_timeout=data["epoch_timeout"],
        enqueue=enqueue,
    )
