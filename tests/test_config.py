"""Composing run configs: presets, typing, one-line errors, MSPE_HOME paths."""

from __future__ import annotations

import pytest

from mspe_sweep.config import (
    CONFIG_DIR,
    DRIVER_GROUPS,
    RUN_GROUPS,
    compose_run_config,
    from_yaml,
    group_options,
    to_yaml,
)
from mspe_sweep.errors import UserError


def test_defaults_follow_the_command_line_contract(mspe_home):
    cfg = compose_run_config()
    assert cfg.dataset.name == "zinc"
    assert cfg.model.name == "graph_transformer"
    assert cfg.pe.name == "default"
    assert cfg.training.optimizer.type == "adamw"
    assert cfg.training.scheduler.type == "cosine_warmup"
    assert cfg.dataset.root == str(mspe_home / "data")


@pytest.mark.parametrize("group", RUN_GROUPS + DRIVER_GROUPS)
def test_every_preset_of_a_group_defines_the_same_keys(group):
    import yaml

    keys = {
        path.stem: _flat_keys(yaml.safe_load(path.read_text()))
        for path in (CONFIG_DIR / group).glob("*.yaml")
    }
    assert keys, group
    first = next(iter(keys.values()))
    assert all(k == first for k in keys.values()), keys


def _flat_keys(node, prefix=""):
    if not isinstance(node, dict):
        return {prefix}
    return set().union(*(_flat_keys(v, f"{prefix}{k}.") for k, v in node.items()))


@pytest.mark.parametrize("option", ["none", "lap", "rwse", "heat", "multiscale", "default"])
def test_every_pe_preset_composes(option):
    assert compose_run_config([f"pe={option}"]).pe.name == option


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("pe=foo", "pe=foo: no such option in configs/pe/ (valid: default, heat, lap"),
        ("training.epoch=3", "training.epoch: no such key"),
        ("training.epochs=abc", "training.epochs: Value 'abc'"),
        ("model.hidden_dim=1.5", "model.hidden_dim"),
        ("training.epochs", "key=value"),
    ],
)
def test_config_mistakes_are_one_line_errors(override, expected):
    with pytest.raises(UserError) as info:
        compose_run_config([override])
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_group_options_lists_presets():
    options = group_options()
    assert set(options) == set(RUN_GROUPS)
    assert "zinc_rdkit" in options["dataset"]


def test_yaml_round_trip_and_overrides():
    cfg = compose_run_config(["training.epochs=7"])
    again = from_yaml(to_yaml(cfg), "test", ["dataset.root=/elsewhere"])
    assert again.training.epochs == 7
    assert again.dataset.root == "/elsewhere"


def test_from_yaml_rejects_a_foreign_config():
    with pytest.raises(UserError, match="ckpt.pt: stored config is not a valid run config"):
        from_yaml("training: {epochs: many}\n", "ckpt.pt")
