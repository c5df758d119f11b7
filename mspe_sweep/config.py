"""Composing run configs with Hydra, and where everything lives on disk.

Hydra's compose API is used instead of ``@hydra.main`` so that every entry point controls its
own error messages (one line, no traceback), working directory and output layout, and so the
sweep driver can compose one config per trial in-process.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from pathlib import Path
from typing import Sequence

from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mspe_sweep.errors import UserError
from mspe_sweep.schema import RunConfig
from mspe_sweep.text import one_line
from mspe_sweep.validation import section_key, validate_run_config

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"
STUDIES_DIR = REPO_ROOT / "studies"
RUN_CONFIG = "train"


def mspe_home() -> Path:
    """The root of all state: ``$MSPE_HOME``, or ``./mspe_home`` (made absolute)."""
    return Path(os.environ.get("MSPE_HOME") or "mspe_home").expanduser().resolve()


if not OmegaConf.has_resolver("mspe_home"):
    OmegaConf.register_new_resolver("mspe_home", lambda: str(mspe_home()))


RUN_GROUPS = ("dataset", "model", "pe", "training")
DRIVER_GROUPS = ("storage", "tracking")


def group_options(groups: Sequence[str] = RUN_GROUPS) -> dict[str, list[str]]:
    """Config groups and their options, e.g. ``{"pe": ["default", "heat", ...], ...}``."""
    return {group: sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml")) for group in groups}


def compose_run_config(overrides: Sequence[str] = ()) -> DictConfig:
    """Compose one run's config from ``configs/train.yaml`` and validate it against the schema.

    Args:
        overrides: Hydra override strings (``pe=rwse``, ``training.epochs=3``).

    Returns:
        The composed config, typed by :class:`mspe_sweep.schema.RunConfig` and read-only.

    Raises:
        UserError: an unknown group option or key, a bad override, a wrong value type, or a
            value its rule or factory rejects (:mod:`mspe_sweep.validation`).
    """
    cfg = compose_typed(RUN_CONFIG, overrides, RunConfig)
    validate_run_config(cfg)
    return cfg


def compose_typed(config_name: str, overrides: Sequence[str], schema: type) -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` with overrides and type it by a dataclass."""
    try:
        cfg = _compose(config_name, tuple(overrides))
        typed = OmegaConf.merge(OmegaConf.structured(schema), cfg)
        OmegaConf.resolve(typed)
    except (HydraException, OmegaConfBaseException) as exc:
        raise UserError(describe_config_error(exc, schema)) from None
    except ValueError as exc:  # Hydra's defaults list: `model=5` (a group given a number)
        groups = group_options([p.name for p in CONFIG_DIR.iterdir() if p.is_dir()])
        given = [(k, v) for k, _, v in (o.partition("=") for o in overrides)
                 if k in groups and v not in groups[k]]
        if "Config group override" not in str(exc) or not given:
            raise
        raise UserError(no_such_option(*given[0])) from None
    OmegaConf.set_readonly(typed, True)
    return typed


def _compose(config_name: str, overrides: tuple[str, ...]) -> DictConfig:
    """Hydra's ``compose``, reusing the composition of the same config-group choices.

    Hydra composes the defaults list chosen by the group overrides (``pe=rwse``), then
    applies every other override (``key=value``, ``key={...}``, ``+key=``, ``~key``), in the
    given order. A sweep composes one config per trial and its trials differ in those other
    overrides only, so the composition of the group choices is made once per process
    (``_compose_groups``, ~0.15 s) and copied, and the rest applied with Hydra's own function
    (~5 ms). Any error takes the full ``compose``, so the result and the error message are
    exactly Hydra's. Files under ``configs/`` are read once per process per group choice.
    """
    try:
        groups, values = _split_overrides(overrides)
        cfg = copy.deepcopy(_compose_groups(config_name, groups))
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        return cfg
    except Exception:  # noqa: BLE001 - the full composition below says what is wrong
        pass
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def _split_overrides(overrides: tuple[str, ...]) -> tuple[tuple[str, ...], list]:
    """``(the group choices, the other overrides in order)``, classified as Hydra's defaults
    list does: a group override names a config group and gives no dict (or has a package)."""
    groups: list[str] = []
    values: list = []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        if (override.package is not None or override.is_sweep_override()
                or ((CONFIG_DIR / override.key_or_group).is_dir()
                    and not isinstance(override.value(), dict))):
            groups.append(override.input_line)
        else:
            values.append(override)
    return tuple(groups), values


@functools.lru_cache(maxsize=32)
def _compose_groups(config_name: str, overrides: tuple[str, ...]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def no_such_option(group: str, option: str) -> str:
    """``model=gat: no such option in configs/model/ (valid: gine, graph_transformer)``."""
    valid = ", ".join(group_options([group])[group])
    return f"{group}={option}: no such option in configs/{group}/ (valid: {valid})"


def describe_config_error(exc: Exception, schema: type | None = None) -> str:
    """Turn a Hydra/OmegaConf exception into one line naming the key and what is valid;
    ``schema`` is the dataclass the config was typed by (default: the run config)."""
    key = getattr(exc, "full_key", None)
    text = str(exc)
    missing_option = re.search(r"Could not find '([\w/]+)/(\w+)'", text)
    if missing_option:
        return no_such_option(*missing_option.groups())
    given_to_section = re.search(r"is not a subclass of (\w+)\. value: (.*)", text)
    section = (section_key(given_to_section.group(1), schema or RunConfig)
               if given_to_section else None)
    if section:
        (key, first), value = section, given_to_section.group(2).strip()
        return (f"{key}={value}: {key} is a group of keys, not a value; set one of them "
                f"instead, e.g. {key}.{first}={value}")
    not_in_struct = re.search(r"Could not (?:override|append to) '([\w.]+)'", text)
    if not_in_struct:
        return f"{not_in_struct.group(1)}: no such key in the config (see configs/)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    noise = ("full_key:", "object_type", "reference_type", "Set ", "See ")
    lines = [line.split("; reference_type")[0] for line in lines if not line.startswith(noise)]
    message = "; ".join(lines) or type(exc).__name__
    if "missing EQUAL" in message:
        message += " (overrides are key=value, e.g. training.epochs=3)"
    return f"{key}: {message}" if key else message


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML text (what checkpoints and run directories keep)."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def from_yaml(text: str, source: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Read a run config saved by :func:`to_yaml` and re-validate it against the schema.

    Args:
        text: YAML text.
        source: Where the text came from, for error messages (e.g. a checkpoint path).
        overrides: ``key=value`` changes applied on top (e.g. ``dataset.root=/data``).
    """
    try:
        loaded = OmegaConf.create(text)
        changes = OmegaConf.from_dotlist(list(overrides))
        typed = OmegaConf.merge(OmegaConf.structured(RunConfig), loaded, changes)
    except (OmegaConfBaseException, ValueError) as exc:
        reason = describe_config_error(exc) if isinstance(exc, OmegaConfBaseException) else exc
        raise UserError(f"{source}: stored config is not a valid run config: "
                        f"{one_line(reason)}") from None
    try:
        validate_run_config(typed)
    except UserError as exc:
        raise UserError(f"{source}: stored config is not a valid run config: {exc}") from None
    OmegaConf.set_readonly(typed, True)
    return typed
