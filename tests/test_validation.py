"""One validation pass over a composed run config: rules from the schema, options from the
factories, one line naming the key, the value and what is valid."""

from __future__ import annotations

import pytest

from mspe_sweep.config import compose_run_config
from mspe_sweep.errors import UserError
from mspe_sweep.schema import Rule
from mspe_sweep.training import optimizer as optimizer_module
from mspe_sweep.validation import problem, rule_for, rules, section_key, validate_run_config


def test_the_defaults_and_every_preset_are_valid():
    for overrides in ([], ["pe=multiscale"], ["pe=lap"], ["pe=heat"], ["model=gine"],
                      ["dataset=synthetic"], ["training=quick"]):
        validate_run_config(compose_run_config(overrides))


# One bad value for every kind of rule: (override, fragments the one-line error must hold).
BAD = [
    ("training.epochs=0", ["training.epochs=0", ">= 1"]),
    ("training.batch_size=-4", ["training.batch_size=-4", ">= 1"]),
    ("training.optimizer.lr=-1", ["training.optimizer.lr=-1.0", "> 0"]),
    ("training.optimizer.lr=nan", ["training.optimizer.lr=nan", "finite"]),
    ("training.optimizer.lr=inf", ["training.optimizer.lr=inf", "finite"]),
    ("training.optimizer.weight_decay=-0.1", ["training.optimizer.weight_decay", ">= 0"]),
    ("training.optimizer.type=adamax", ["training.optimizer.type=adamax", "adamw, adam, sgd"]),
    ("training.scheduler.type=linear", ["training.scheduler.type=linear", "cosine_warmup"]),
    ("training.scheduler.warmup_epochs=-1", ["training.scheduler.warmup_epochs=-1", ">= 0"]),
    ("training.scheduler.min_lr=0.1", ["training.scheduler.min_lr=0.1", "training.optimizer.lr"]),
    ("training.loss=l3", ["training.loss=l3", "mae"]),
    ("training.monitor=val/acc", ["training.monitor=val/acc", "val/mae"]),
    ("training.monitor_mode=lowest", ["training.monitor_mode=lowest", "min, max"]),
    ("training.grad_clip=0", ["training.grad_clip=0.0", "> 0"]),
    ("training.early_stopping=0", ["training.early_stopping=0", ">= 1"]),
    ("training.accumulation_steps=0", ["training.accumulation_steps=0", ">= 1"]),
    ("training.seed=-1", ["training.seed=-1", ">= 0"]),
    ("training.num_workers=-1", ["training.num_workers=-1", ">= 0"]),
    ("device=tpu", ["device=tpu", "cuda:N"]),
    ("device=cuda:x", ["device=cuda:x", "cuda:N"]),
    ("dataset.name=qm9", ["dataset.name=qm9", "zinc_rdkit"]),
    ("dataset.train_size=0", ["dataset.train_size=0", ">= 1"]),
    ("model.name=gat", ["model.name=gat", "graph_transformer"]),
    ("model.hidden_dim=0", ["model.hidden_dim=0", ">= 1"]),
    ("model.heads=3", ["model.heads=3", "model.hidden_dim"]),
    ("model.dropout=1.0", ["model.dropout=1.0", "< 1"]),
    ("model.pooling=max", ["model.pooling=max", "sum, mean"]),
    ("model.norm=group", ["model.norm=group", "batch, layer"]),
    ("model.pe_combine=mul", ["model.pe_combine=mul", "concat, add"]),
    ("model.lap_encoder=mlp", ["model.lap_encoder=mlp", "linear, signnet"]),
    ("pe.dim=0", ["pe.dim=0", ">= 1"]),
    ("pe.rwse.steps=-2", ["pe.rwse.steps=-2", ">= 0"]),
    ("pe.rwse.scale=log", ["pe.rwse.scale=log", "linear, geometric"]),
    ("pe.heat.t_min=0", ["pe.heat.t_min=0.0", "> 0"]),
]


@pytest.mark.parametrize(("override", "fragments"), BAD, ids=[b[0] for b in BAD])
def test_each_bad_value_is_one_line_naming_key_value_and_valid(override, fragments):
    with pytest.raises(UserError) as info:
        compose_run_config([override])
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_heat_times_across_keys():
    with pytest.raises(UserError, match=r"pe.heat.t_min .* must be <= pe.heat.t_max"):
        compose_run_config(["pe=heat", "pe.heat.t_min=20", "pe.heat.t_max=10"])


def test_options_come_from_the_factory_not_a_second_list(monkeypatch):
    monkeypatch.setitem(optimizer_module.OPTIMIZERS, "lion", optimizer_module.OPTIMIZERS["adam"])
    from mspe_sweep import validation

    validation._options.cache_clear()
    try:
        assert problem("training.optimizer.type", "lion") is None
    finally:
        monkeypatch.undo()
        validation._options.cache_clear()
    assert problem("training.optimizer.type", "lion").startswith("unknown option")


def test_every_rule_is_reachable_and_well_formed():
    keys = dict(rules())
    assert {"training.optimizer.lr", "training.epochs", "pe.rwse.steps", "device",
            "model.pooling", "dataset.name"} <= set(keys)
    for key, rule in keys.items():
        assert isinstance(rule, Rule)
        assert rule_for(key) is rule


def test_problem_checks_one_value_for_the_sweep():
    assert problem("training.optimizer.lr", 1e-3) is None
    assert problem("training.optimizer.lr", -1.0) == "must be > 0"
    assert problem("training.optimizer.lr", None) is None  # an unset optional passes
    assert problem("not.a.key", 5) is None  # keys without a rule are the type system's


def test_section_key_names_a_section_by_its_dataclass():
    assert section_key("OptimizerConfig") == ("training.optimizer", "type")
    assert section_key("LapConfig") == ("pe.lap", "k")
    assert section_key("NoSuchConfig") is None


@pytest.mark.parametrize(("override", "suggestion"), [
    ("training.optimizer=adam", "training.optimizer.type=adam"),
    ("training.scheduler=cosine", "training.scheduler.type=cosine"),
])
def test_a_value_given_to_a_section_suggests_its_key(override, suggestion):
    with pytest.raises(UserError) as info:
        compose_run_config([override])
    message = str(info.value)
    assert message.startswith(f"{override}: ") and suggestion in message
    assert "Merge error" not in message


def test_duplicate_overrides_stay_last_wins():
    cfg = compose_run_config(["training.epochs=3", "training.epochs=4", "pe=lap", "pe=rwse"])
    assert cfg.training.epochs == 4 and cfg.pe.name == "rwse"
