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


COMPOSITIONS = [
    ["dataset=zinc_rdkit", "dataset.train_size=500", "pe=rwse", "training.optimizer.lr=0.001"],
    ["pe=rwse", "pe.rwse.steps=24", "training.epochs=3", "model=gine"],
    ["training.epochs=3", "~training.scheduler", "pe=heat", "+training.note=a b"],
    ["dataset=synthetic", "training.optimizer={lr: 0.5}", "training.optimizer.lr=2e-3"],
    ["training.optimizer.lr=2e-3", "pe=lap", "training.optimizer={lr: 0.5}"],
    ["+training.note=a", "training.epochs=2", "~training.note", "pe=heat"],
    # a value before a deletion, a force-add or a dict of its own key: Hydra's order decides
    ["training.scheduler.warmup_epochs=2", "~training.scheduler"],
    ["training.epochs=3", "++training.epochs=4"],
    ["training.epochs=abc"],  # composes: the schema rejects it afterwards
    ["training.nope=1"], ["pe=nope"], ["training.epochs"], ["model=5"],
    ["pe.rwse.steps=choice(1,2)"], ["~training.nope"],
]


@pytest.mark.parametrize("overrides", COMPOSITIONS, ids=lambda o: " ".join(o))
def test_a_reused_composition_equals_hydras_own(overrides):
    # Trials reuse the composition of their config groups (config._compose): the config, or
    # the error, must be exactly what Hydra's compose gives for the same overrides.
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from mspe_sweep.config import RUN_CONFIG, _compose

    def outcome(fn):
        try:
            return OmegaConf.to_yaml(fn())
        except Exception as exc:  # noqa: BLE001 - the error is the outcome compared
            return f"{type(exc).__name__}: {exc}"

    def hydra():
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name=RUN_CONFIG, overrides=list(overrides))

    for _ in range(2):  # the second time from the cache
        assert outcome(lambda: _compose(RUN_CONFIG, tuple(overrides))) == outcome(hydra)


def test_trials_that_differ_in_values_compose_their_groups_once():
    from mspe_sweep.config import _compose_groups

    _compose_groups.cache_clear()
    configs = [compose_run_config(["pe=rwse", f"training.optimizer.lr={lr}"])
               for lr in (1e-3, 2e-3, 3e-3)]
    assert [c.training.optimizer.lr for c in configs] == [1e-3, 2e-3, 3e-3]
    assert _compose_groups.cache_info().misses == 1 and _compose_groups.cache_info().hits == 2
    # each config is its own copy: the cached composition is never changed by a trial
    assert compose_run_config(["pe=rwse"]).training.optimizer.lr == compose_run_config(
        []).training.optimizer.lr
