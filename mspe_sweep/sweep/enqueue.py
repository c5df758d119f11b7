"""Warm start: the study file's ``enqueue`` entries, validated, and queued once per study.

A study file may list known configurations (a published setting, last month's winner) for the
study to try before the sampler's own suggestions::

    enqueue:
      - {training.optimizer.lr: 0.001, training.scheduler.warmup_epochs: 50, pe: rwse}

Each entry fixes some of the searched params of one trial (Optuna's ``enqueue_trial``); the
params it leaves out are suggested by the sampler as usual. Entries are checked against the
search space when the study file is loaded, like everything else in it. ``prepare`` queues
them once per study: each queued entry's key is kept in the study (``StudyRecord.enqueued``),
so resuming the study, or a second machine joining it, does not queue it again; an entry
added to the file later is queued on the next run. Workers pop WAITING trials oldest first
(``Study.ask``), so the queued entries run before any sampled trial.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from mspe_sweep.errors import UserError
from mspe_sweep.sweep.records import StudyRecord, json_digest
from mspe_sweep.sweep.space import condition_holds, same_value

if TYPE_CHECKING:
    import optuna

    from mspe_sweep.sweep.spec import ParamSpec, StudySpec

_FORM = "a mapping {searched param: value}, e.g. {training.optimizer.lr: 0.001, pe: rwse}"


def entry_key(entry: Mapping[str, Any]) -> str:
    """The stable key of one (validated) entry: the same values give the same key, in any
    order, on every run of the command."""
    return json_digest(dict(entry), 16)


def _space(dist: BaseDistribution) -> str:
    """A distribution's values in words, for error messages."""
    if isinstance(dist, CategoricalDistribution):
        return f"not one of its choices: {', '.join(map(str, dist.choices))}"
    assert isinstance(dist, (FloatDistribution, IntDistribution)), dist
    detail = " (log scale)" if dist.log else ""
    if dist.step is not None and not (isinstance(dist, IntDistribution) and dist.step == 1):
        detail = f" in steps of {dist.step} from {dist.low}"
    return f"outside its range [{dist.low}, {dist.high}]{detail}"


def _value(where: str, param: ParamSpec, value: Any) -> Any:
    """The entry's value for ``param`` as the trial will hold it (a categorical's own choice,
    a float for a float range), or a ``UserError`` saying why it is outside the search."""
    dist, shown = param.distribution, f"{param.key}={value!r}"
    if isinstance(dist, CategoricalDistribution):
        found = [choice for choice in dist.choices if same_value(value, choice)]
        if not found:
            raise UserError(f"{where}: {shown} is {_space(dist)}")
        return found[0]
    if isinstance(value, str):
        raise UserError(f"{where}: {shown} is text, not a number (YAML reads 1e-3 as text: "
                        "write 1.0e-3 or 0.001)")
    integer = isinstance(dist, IntDistribution)
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise UserError(f"{where}: {shown} is not {'an integer' if integer else 'a number'}")
    value = int(value) if integer else float(value)
    try:
        # Optuna's own membership test (private, but the one its fixed params go through).
        inside = dist._contains(dist.to_internal_repr(value))
    except ValueError:  # NaN, or <= 0 on a log scale
        inside = False
    if not inside:
        raise UserError(f"{where}: {shown} is {_space(dist)}")
    return value


def _check_conditions(
    where: str, entry: Mapping[str, Any], by_key: Mapping[str, ParamSpec]
) -> None:
    """A conditional param may be given only with the params its ``when`` names, set to
    values under which it is searched at all."""
    for key in entry:
        for name, allowed in by_key[key].when.items():
            needed = f"{key} is searched only when {name} is one of {', '.join(map(str, allowed))}"
            if name not in entry:
                raise UserError(f"{where}: {needed}; give {name} too")
            if not condition_holds({name: allowed}, entry):
                raise UserError(f"{where}: {needed}, and this entry has {name}={entry[name]!r}")


def parse_enqueue(
    path: Path, raw: Any, params: Sequence[ParamSpec]
) -> tuple[dict[str, Any], ...]:
    """Validates the study file's ``enqueue`` list against its search space.

    Args:
        path: The study file (named in errors).
        raw: The ``enqueue`` value as written: a list of mappings.
        params: The study's searched params.

    Returns:
        The entries, each ``{param key: value}`` with the values as the trials will hold them.

    Raises:
        UserError: Not a list of mappings; an empty or repeated entry; a key that is not a
            searched param; a value outside its param's search; a conditional param given
            without, or against, its condition.
    """
    if not isinstance(raw, list):
        raise UserError(f"{path}: enqueue: must be a list of entries, each {_FORM}")
    by_key = {p.key: p for p in params}
    entries: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        where = f"{path}: enqueue[{index}]"
        if not isinstance(item, Mapping) or not item:
            raise UserError(f"{where}: must be {_FORM}, got {item!r}")
        for key in item:
            if key not in by_key:
                raise UserError(f"{where}: {key} is not a searched param (searched: "
                                f"{', '.join(by_key)}); a value for every trial goes to `fixed`")
        entry = {key: _value(where, by_key[key], value) for key, value in item.items()}
        _check_conditions(where, entry, by_key)
        if entry in entries:
            raise UserError(f"{where}: the same configuration as "
                            f"enqueue[{entries.index(entry)}]; list it once")
        entries.append(entry)
    return tuple(entries)


def enqueue_known(study: optuna.Study, spec: StudySpec) -> int:
    """Queues the study file's entries that this study has not queued before.

    Call it once per run of the command, in the process that prepares the study (never in a
    worker). An entry's key is recorded right after its trial is queued, so an interrupted
    call queues at most that one entry twice.

    Args:
        study: The prepared study.
        spec: Its validated spec.

    Returns:
        How many entries were queued now (0 when all were queued before).
    """
    record = StudyRecord(study)
    done = record.enqueued
    queued = 0
    for entry in spec.enqueue:
        key = entry_key(entry)
        if key in done:
            continue
        study.enqueue_trial(dict(entry), skip_if_exists=False)
        done.append(key)
        record.set_enqueued(done)
        queued += 1
    return queued
