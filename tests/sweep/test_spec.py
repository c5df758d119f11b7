"""Study files -> StudySpec: every validation error is one line naming the file and the key."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from mspe_sweep.errors import UserError
from mspe_sweep.sweep.spec import StudySpec, find_study_file, load_study

GROUPS = {
    "pe": ["none", "lap", "rwse", "heat", "multiscale", "default"],
    "model": ["graph_transformer", "gine"],
    "dataset": ["zinc", "synthetic"],
}
METRICS = {"val/mae", "val/loss", "train/loss"}
CFG = OmegaConf.create({
    "model": {"name": "graph_transformer", "hidden_dim": 64, "num_layers": 4},
    "pe": {"name": "default", "dim": 16, "rwse": {"steps": 20}},
    "training": {"epochs": 30, "optimizer": {"type": "adamw", "lr": 1e-3, "weight_decay": 0.0},
                 "scheduler": {"warmup_epochs": 5}},
})
BASE = {
    "name": "zinc-test",
    "direction": "minimize",
    "metric": "val/mae",
    "n_trials": 20,
    "fixed": ["model=graph_transformer", "training.epochs=30"],
    "params": {
        "training.optimizer.lr": "tag(log, interval(1e-5, 1e-2))",
        "pe": "choice(rwse, multiscale)",
        "pe.rwse.steps": {"values": "range(8, 33, 8)", "when": {"pe": ["rwse"]}},
    },
}


def write(tmp_path: Path, data: dict | str, name: str = "mystudy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def load(path: Path, **kwargs) -> StudySpec:
    kwargs = {"compose": lambda overrides: CFG, "groups": GROUPS, "known_metrics": METRICS,
              **kwargs}
    return load_study(path, **kwargs)


def with_(**changes) -> dict:
    data = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    return data


def params(**extra) -> dict:
    return {**BASE["params"], **extra}


def test_valid_file_loads_into_typed_spec(tmp_path):
    spec = load(write(tmp_path, BASE))
    assert (spec.name, spec.direction, spec.metric, spec.n_trials) == (
        "zinc-test", "minimize", "val/mae", 20)
    assert (spec.seed, spec.timeout, spec.max_consecutive_failures, spec.keep_checkpoints) == (
        0, None, 5, 3)
    assert (spec.sampler.type, spec.pruner.type) == ("tpe", "median")
    assert spec.fixed == ("model=graph_transformer", "training.epochs=30")
    assert [p.key for p in spec.params] == ["training.optimizer.lr", "pe", "pe.rwse.steps"]
    lr, pe, steps = (p.distribution for p in spec.params)
    assert lr == FloatDistribution(1e-5, 1e-2, log=True)
    assert pe == CategoricalDistribution(["rwse", "multiscale"])
    assert steps == IntDistribution(8, 32, step=8)
    assert dict(spec.params[2].when) == {"pe": ("rwse",)}


def test_fingerprint_and_to_dict_are_json_and_track_the_space(tmp_path):
    spec = load(write(tmp_path, BASE))
    payload = spec.fingerprint_payload()
    assert json.loads(json.dumps(payload)) == payload
    assert payload["params"][2]["when"] == {"pe": ["rwse"]}
    assert json.loads(json.dumps(spec.to_dict()))["sampler"] == {"type": "tpe"}
    same = load(write(tmp_path, with_(n_trials=99, sampler="random"), "b.yaml"))
    assert same.fingerprint_payload() == payload
    changed = params(**{"training.optimizer.lr": "tag(log, interval(1e-5, 1e-1))"})
    other = load(write(tmp_path, with_(params=changed), "c.yaml"))
    assert other.fingerprint_payload() != payload


def test_bare_metric_name_means_validation_metric(tmp_path):
    assert load(write(tmp_path, with_(metric="mae"))).metric == "val/mae"


def test_sampler_and_pruner_mappings_are_kept(tmp_path):
    data = with_(sampler={"type": "tpe", "n_startup_trials": 3},
                 pruner={"type": "patient", "patience": 2, "wrapped": {"type": "median"}})
    spec = load(write(tmp_path, data))
    assert spec.sampler.to_dict() == {"type": "tpe", "n_startup_trials": 3}
    assert spec.pruner.kwargs["wrapped"] == {"type": "median"}


ERRORS = [
    # (study data, key that must be named, fragment of the message)
    (with_(bogus=1), "bogus", "valid keys"),
    (with_(metric=None), "metric", "missing"),
    (with_(direction="down"), "direction", "maximize"),
    (with_(metric="val/rmse"), "metric", "val/mae"),
    (with_(name=""), "name", "non-empty"),
    (with_(n_trials=0), "n_trials", ">= 1"),
    (with_(n_trials=True), "n_trials", ">= 1"),
    (with_(timeout=-5), "timeout", "> 0"),
    (with_(seed="abc"), "seed", "integer"),
    (with_(max_consecutive_failures=0), "max_consecutive_failures", ">= 1"),
    (with_(keep_checkpoints=-1), "keep_checkpoints", ">= 0"),
    (with_(fixed="training.epochs=3"), "fixed", "list"),
    (with_(fixed=["training.epochs=(("]), "fixed", "cannot parse"),
    (with_(fixed=["training.epochs=choice(1,2)"]), "fixed", "params"),
    (with_(fixed=["training.epochs=1", "training.epochs=2"]), "training.epochs", "twice"),
    (with_(params={}), "params", "non-empty"),
    (with_(params=params(**{"model.hidden_dim": 64})), "model.hidden_dim", "fixed"),
    (with_(params=params(**{"model.hidden_dim": "64"})), "model.hidden_dim", "plain value"),
    (with_(params=params(**{"model.hidden_dim": "choice(1,2"})), "model.hidden_dim", "parse"),
    (with_(params=params(**{"model.hidden_dim": "range(8, 8)"})), "model.hidden_dim", "empty"),
    (with_(params=params(**{"model.hidden_dim": "range(1, 9, 0)"})), "model.hidden_dim", "step"),
    (with_(params=params(**{"model.hidden_dim": "interval(5, 1)"})), "model.hidden_dim",
     "inverted"),
    (with_(params=params(**{"training.optimizer.weight_decay": "tag(log, interval(0, 1))"})),
     "training.optimizer.weight_decay", "above 0"),
    (with_(params=params(**{"training.optimizer.weight_decay": "tag(log, interval(-1, 1))"})),
     "training.optimizer.weight_decay", "above 0"),
    (with_(params=params(**{"model.hidden_dim": "choice()"})), "model.hidden_dim", "empty"),
    (with_(params=params(**{"model.hidden_dim": "choice(32, 32)"})), "model.hidden_dim", "twice"),
    (with_(params=params(**{"model.hidden_dim": "tag(fast, interval(1, 2))"})),
     "model.hidden_dim", "valid tags"),
    (with_(params=params(**{"model.hidden_dim": {"value": "choice(1, 2)"}})),
     "model.hidden_dim", "values"),
    (with_(params=params(**{"training.epochs": "choice(10, 20)"})), "training.epochs",
     "`fixed`"),
    (with_(params=params(**{"model.hiden_dim": "choice(32, 64)"})), "model.hiden_dim",
     "did you mean model.hidden_dim"),
    (with_(params=params(**{"training.optimizer": "choice(a, b)"})), "training.optimizer",
     "section"),
    (with_(params=params(pe="choice(rwse, fancy)")), "params.pe", "multiscale"),
    (with_(params=params(pe="interval(0, 1)")), "params.pe", "choice(...) of its options"),
    (with_(params=params(**{"pe.rwse.steps": {"values": "range(8, 33, 8)",
                                              "when": {"model": ["gine"]}}})),
     "pe.rwse.steps", "not a param defined above"),
    (with_(params={"pe.rwse.steps": {"values": "range(8, 33, 8)", "when": {"pe": ["rwse"]}},
                   "pe": "choice(rwse, lap)"}), "pe.rwse.steps", "defined above"),
    (with_(params=params(**{"pe.rwse.steps": {"values": "range(8, 33, 8)",
                                              "when": {"pe": ["heat"]}}})),
     "pe.rwse.steps", "not among its values"),
    (with_(params=params(**{"model.hidden_dim": {"values": "choice(32, 64)",
                                                 "when": {"training.optimizer.lr": [0.1]}}})),
     "model.hidden_dim", "continuous"),
    (with_(params=params(**{"model.hidden_dim": {"values": "choice(32, 64)", "when": {}}})),
     "model.hidden_dim", "when"),
    (with_(sampler="annealing"), "sampler", "tpe"),
    (with_(sampler=["tpe"]), "sampler", "type"),
    (with_(sampler={"type": "tpe", "n_startup": 3}), "sampler", "n_startup_trials"),
    (with_(pruner="sometimes"), "pruner", "median"),
    (with_(pruner={"type": "median", "warmup": 3}), "pruner", "n_warmup_steps"),
    (with_(sampler="grid"), "sampler", "training.optimizer.lr"),
]


@pytest.mark.parametrize(("data", "key", "fragment"), ERRORS)
def test_validation_error_names_file_and_key_on_one_line(tmp_path, data, key, fragment):
    with pytest.raises(UserError) as info:
        load(write(tmp_path, data))
    message = str(info.value)
    assert "mystudy.yaml" in message
    assert key in message
    assert fragment in message
    assert "\n" not in message


def test_searched_key_also_on_command_line_is_an_error(tmp_path):
    with pytest.raises(UserError, match=r"mystudy\.yaml: params\.pe: also set in the command"):
        load(write(tmp_path, BASE), cli_overrides=["pe=lap", "workers=2"])


@pytest.mark.parametrize(("text", "fragment"), [
    ("name: a\nname: b\n", "duplicate key 'name'"),
    ("params:\n  pe: choice(a)\n  pe: choice(b)\n", "duplicate key 'pe'"),
    ("name: [unclosed\n", "invalid YAML"),
    ("- just\n- a list\n", "mapping"),
])
def test_unreadable_files_are_one_line_errors(tmp_path, text, fragment):
    with pytest.raises(UserError) as info:
        load(write(tmp_path, text))
    assert "mystudy.yaml" in str(info.value) and fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_compose_checks_keys_under_searched_group_per_allowed_option(tmp_path):
    composed = []

    def compose(overrides):
        if overrides[-1].startswith("pe="):  # not the base config (fixed, no group option)
            composed.append(overrides[-1])
        pe = {"rwse": {"steps": 20}} if "pe=rwse" in overrides else {"lap": {"k": 4}}
        return OmegaConf.create({**OmegaConf.to_container(CFG), "pe": pe})

    load(write(tmp_path, BASE), compose=compose)
    assert composed == ["pe=rwse"]
    bad = params(**{"pe.rwse.steps": "range(8, 33, 8)"})
    with pytest.raises(UserError, match=r"pe\.rwse\.steps: no such key .* with pe=multiscale"):
        load(write(tmp_path, with_(params=bad)), compose=compose)


def test_find_study_file_lists_available_studies(tmp_path):
    write(tmp_path, BASE, "zinc.yaml")
    write(tmp_path, BASE, "quick.yaml")
    assert find_study_file("zinc", tmp_path) == tmp_path / "zinc.yaml"
    with pytest.raises(UserError, match=r"study=zinq: no such study .*available: quick, zinc;"):
        find_study_file("zinq", tmp_path)


def test_find_study_file_takes_paths_and_says_what_is_wrong_with_them(tmp_path):
    write(tmp_path, BASE, "mine.yaml")
    assert find_study_file(str(tmp_path / "mine.yaml"), tmp_path) == tmp_path / "mine.yaml"
    missing = tmp_path / "x.yaml"
    with pytest.raises(UserError, match=rf"^study={missing}: no such file;") as info:
        find_study_file(str(missing), tmp_path)
    assert "x.yaml.yaml" not in str(info.value)
    with pytest.raises(UserError, match=rf"^study={tmp_path}: is a directory"):
        find_study_file(str(tmp_path), tmp_path)


def test_cfg_none_composes_with_hydra_and_bad_fixed_is_a_user_error(tmp_path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    conf = tmp_path / "conf"
    (conf / "pe").mkdir(parents=True)
    (conf / "run.yaml").write_text("defaults:\n  - pe: rwse\n  - _self_\n"
                                   "training:\n  epochs: 3\n  optimizer:\n    lr: 0.001\n")
    for name in ("rwse", "lap"):
        (conf / "pe" / f"{name}.yaml").write_text(f"name: {name}\nrwse:\n  steps: 4\n")
    study = with_(fixed=["training.epochs=2"], params={
        "training.optimizer.lr": "interval(0.0001, 0.01)", "pe": "choice(rwse, lap)",
        "pe.rwse.steps": "range(2, 9, 2)"})
    with initialize_config_dir(config_dir=str(conf), version_base=None):
        def compose(overrides):
            return hydra_compose("run", overrides=overrides)

        kwargs = {"groups": {"pe": ["rwse", "lap"]}, "compose": compose}
        spec = load(write(tmp_path, study), **kwargs)
        assert [p.key for p in spec.params][-1] == "pe.rwse.steps"
        with pytest.raises(UserError) as info:
            load(write(tmp_path, with_(fixed=["training.epoch=2"], params=study["params"])),
                 **kwargs)
    assert "mystudy.yaml: fixed: cannot compose" in str(info.value)
    assert "training.epoch" in str(info.value) and "\n" not in str(info.value)


@dataclass
class Training:
    epochs: int = 30
    lr: float = 1e-3


@dataclass
class Run:
    training: Training = field(default_factory=Training)


def test_searched_values_must_fit_a_typed_run_config(tmp_path):
    typed = OmegaConf.structured(Run)
    OmegaConf.set_readonly(typed, True)
    ok = {"training.epochs": "tag(int, interval(10, 40))", "training.lr": "choice(1, 0.5)"}
    spec = load(write(tmp_path, with_(fixed=[], params=ok)), compose=lambda overrides: typed)
    assert len(spec.params) == 2
    bad = {"training.epochs": "interval(10, 40)"}
    with pytest.raises(UserError) as info:
        load(write(tmp_path, with_(fixed=[], params=bad)), compose=lambda overrides: typed)
    message = str(info.value)
    assert "mystudy.yaml: params.training.epochs: searched value 10.0 does not fit" in message
    assert "Integer" in message and "\n" not in message


def test_unquoted_search_inside_flow_mapping_gets_a_quoting_hint(tmp_path):
    head = yaml.safe_dump(with_(params=None), sort_keys=False)
    text = head + "params:\n  pe: choice(rwse, lap)\n  pe.rwse.steps: {values: range(8, 33, 8)}\n"
    with pytest.raises(UserError) as info:
        load(write(tmp_path, text))
    assert "mystudy.yaml: params.pe.rwse.steps:" in str(info.value)
    assert "quote the search" in str(info.value) and "\n" not in str(info.value)
