"""What ``prepare`` decided, as a value a worker process can be handed: the ``Plan``.

A worker needs nothing else: not the command line (it was validated once, by ``prepare``), not
the dataset (its fingerprint is in the plan). The plan holds the storage URL with its password,
so it travels to a worker in its environment (readable only by the user), never on a command
line; see :mod:`mspe_sweep.sweep.launch`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mspe_sweep.config import mspe_home
from mspe_sweep.sweep.spec import StudySpec
from mspe_sweep.tracking import DataRecord


@dataclass(frozen=True)
class Plan:
    """A prepared study: everything a worker needs to run its trials.

    Attributes:
        spec: The validated study, with the command line's ``study.*`` settings applied.
        run_overrides: Command-line run overrides (applied after the study's ``fixed``).
        storage_url: The study storage, unmasked: print it only through ``mask_url``.
        storage_options: Keyword arguments of ``build_storage`` (heartbeat, retries, ...).
        tracking_backend: ``none``, ``local`` or ``server``.
        tracking_uri: The tracking server (``tracking=server``) or MLflow database
            (``tracking=local``); None for the default.
        fingerprint: The dataset fingerprint, tagged on every trial's run.
        data_source: What data the fingerprint names, for the start-up lines.
        base_config_yaml: The composed base run config, kept on the study's parent run.
        workers: Worker processes to start (``launcher=slurm``: array tasks).
        trials_per_gpu: Trials packed on each GPU.
        data_name: The dataset's name (``zinc_rdkit``), ``data_sizes`` its graphs per split.
        launcher: The ``launcher.*`` settings (``name`` is ``local`` or ``slurm``).
        confirms: For a confirmation study (``<study>/confirm``), the study it confirms: its
            workers run the queued (configuration, seed) trials only, without pruning.
        confirms_run: That study's MLflow parent run, which the confirmation's run nests under.
    """

    spec: StudySpec
    run_overrides: tuple[str, ...]
    storage_url: str
    storage_options: dict[str, Any]
    tracking_backend: str
    tracking_uri: str | None
    fingerprint: str
    data_source: str
    base_config_yaml: str
    workers: int = 1
    trials_per_gpu: int = 1
    launcher: dict[str, Any] = dataclasses.field(default_factory=lambda: {"name": "local"})
    data_name: str = ""
    data_sizes: dict[str, int] = dataclasses.field(default_factory=dict)
    confirms: str | None = None
    confirms_run: str | None = None

    @property
    def data(self) -> DataRecord:
        """The study's data, as every trial's MLflow run records it (its dataset input)."""
        return DataRecord(self.data_name, self.data_source, self.fingerprint, self.data_sizes)

    @property
    def overrides(self) -> list[str]:
        """Every trial's run overrides before its sampled params: ``fixed``, then the CLI's."""
        return [*self.spec.fixed, *self.run_overrides]

    @property
    def runs_dir(self) -> Path:
        return mspe_home() / "runs" / self.spec.name

    def to_json(self) -> str:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data.update(spec=self.spec.to_dict(), run_overrides=list(self.run_overrides))
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        data = json.loads(text)
        data.update(spec=StudySpec.from_dict(data["spec"]),
                    run_overrides=tuple(data["run_overrides"]))
        return cls(**data)
