"""Each trial run logs its data as an MLflow dataset input, so the runs table's Dataset column
says which data every trial used (name, fingerprint as digest, split sizes, context)."""

from __future__ import annotations

import json

from _tracking_helpers import BASE_YAML, SPEC

from mspe_sweep.tracking import DataRecord

DATA = DataRecord(name="zinc_rdkit", source="offline ZINC-format set (rdkit wheel)",
                  fingerprint="f" * 64, sizes={"train": 80, "val": 10, "test": 10})


def test_trial_run_logs_its_dataset_input(backend, study_name):
    tracker = backend.build()
    tracker.start_study(study_name, None, SPEC, BASE_YAML)
    run = tracker.start_trial(0, {"pe": "rwse"}, [], ["pe=rwse"], {}, data=DATA)
    run.finish("COMPLETE", value=0.5)
    inputs = backend.client.get_run(run.run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    dataset = inputs[0].dataset
    assert dataset.name == "zinc_rdkit" and dataset.digest == "f" * 36
    assert json.loads(dataset.profile)["splits"] == {"train": 80, "val": 10, "test": 10}
    assert {t.key: t.value for t in inputs[0].tags} == {"mlflow.data.context": "training"}


def test_without_data_no_input_is_logged(backend, study_name):
    tracker = backend.build()
    tracker.start_study(study_name, None, SPEC, BASE_YAML)
    run = tracker.start_trial(1, {}, [], [], {})
    run.finish("COMPLETE", value=0.5)
    assert backend.client.get_run(run.run_id).inputs.dataset_inputs == []
