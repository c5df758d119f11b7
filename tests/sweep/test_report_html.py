"""report.html: one self-contained page (tables with ids, PNGs as data URIs, text escaped), and
what headless Chromium renders of it (slow).

The confirmation is built from its dataclasses directly, with ``SeedStats`` and
``Comparison`` values chosen by hand, so the page's numbers can be checked as text.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from mspe_sweep.sweep.confirm_table import Confirmation, ConfirmedConfig, SeedRun
from mspe_sweep.sweep.pe_answer import Table, build_pe_answer
from mspe_sweep.sweep.report_html import publish_answer, write_report_html
from mspe_sweep.sweep.stats import Comparison, SeedStats

CHROMIUM = Path("/usr/bin/chromium")
DATA_NOTE = "offline ZINC-format set (zinc_rdkit); not comparable with published ZINC results"
TABLE_IDS = ("leaderboard", "confirmation", "pe-kinds", "pe-scales", "importances")
PNG = b"\x89PNG\r\n\x1a\n"
DISTS = {"training.optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True),
         "training.scheduler.warmup_epochs": CategoricalDistribution([0, 5, 10]),
         "pe": CategoricalDistribution(["none", "rwse"]),
         "pe.rwse.steps": CategoricalDistribution([8, 16])}


class Page(HTMLParser):
    """Tables by id (rows of cell texts), image sources, and all visible text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self.scripts = 0
        self.text: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._table and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture
def study():
    """Six trials: rwse best (0.30), none second; a PRUNED and a FAIL one."""
    s = optuna.create_study(study_name="zinc_quick")
    rows = [(0.30, 1e-3, 5, "rwse", 16), (0.35, 2e-3, 0, "rwse", 8),
            (0.50, 1e-3, 10, "none", None), (0.45, 5e-4, 5, "none", None),
            (None, 3e-3, 0, "rwse", 8), (None, 9e-3, 10, "none", None)]
    for i, (value, lr, warmup, pe, steps) in enumerate(rows):
        params = {"training.optimizer.lr": lr, "training.scheduler.warmup_epochs": warmup,
                  "pe": pe}
        if steps:
            params["pe.rwse.steps"] = steps
        state = TrialState.COMPLETE if value else (TrialState.PRUNED if i == 4 else
                                                   TrialState.FAIL)
        s.add_trial(create_trial(
            params=params, distributions={k: DISTS[k] for k in params}, value=value, state=state,
            user_attrs={"test_metric": value + 0.01} if value else {},
            intermediate_values={0: 0.9, 1: 0.7} if state != TrialState.FAIL else None))
    return s


def confirmation() -> Confirmation:
    def runs(trial, values):
        return tuple(SeedRun(seed=seed, trial=trial if seed == 0 else 10 + seed,
                             original=seed == 0, value=v, test=v + 0.01,
                             curve={0: v + 0.3, 1: v + 0.1, 2: v})
                     for seed, v in enumerate(values))

    winner = ConfirmedConfig(
        key="k1", sweep_rank=1, params={"pe": "rwse", "pe.rwse.steps": 16}, pending=0,
        runs=runs(0, [0.30, 0.34, 0.36]), val=SeedStats(3, 0.3333, 0.0306, 0.2574, 0.4092),
        test=SeedStats(3, 0.3433, 0.0306, 0.2674, 0.4192), vs_best=None)
    second = ConfirmedConfig(
        key="k2", sweep_rank=2, params={"pe": "rwse", "pe.rwse.steps": 8}, pending=1,
        runs=runs(1, [0.35, 0.41, 0.43]), val=SeedStats(3, 0.3967, 0.0416, 0.2933, 0.5001),
        test=None, vs_best=Comparison("permutation", 0.2, 0.05, 0.1))
    return Confirmation(study="zinc_quick", metric="val/mae", direction="minimize", seeds=3,
                        configs=(winner, second))


def test_publish_answer_writes_one_self_contained_page(study, tmp_path):
    files = publish_answer(study, "val/mae", tmp_path, confirmation=confirmation(),
                           data_note=DATA_NOTE)
    names = sorted(f.name for f in files)
    assert names == sorted(["report.html", *(f"{plot}.{ext}" for ext in ("png", "html") for
                                             plot in ("pe_kinds", "lr_warmup", "confirm_curves"))])
    raw = (tmp_path / "report.html").read_text(encoding="utf-8")
    page = Page(raw)
    assert set(TABLE_IDS) <= set(page.tables)
    board = page.tables["leaderboard"]
    assert board[0][:4] == ["rank", "trial", "val/mae", "test/mae"]
    assert [row[1] for row in board[1:]] == ["0", "1", "3", "2"]  # COMPLETE, best first
    assert board[1][3] == "0.3100"
    conf = page.tables["confirmation"]
    assert len(conf) == 3
    assert conf[1][2:8] == ["3", "0.3333 ± 0.0759", "0.0306", "0.3433 ± 0.0759",
                            "0.3000 (seed 0)", "-0.0500"]
    assert conf[2][2] == "3 (+1 pending)"
    assert conf[2][-5:-1] == ["permutation", "0.2", "0.1", "no"]
    assert conf[2][-1] == "pe=rwse pe.rwse.steps=8"
    kinds = page.tables["pe-kinds"]
    assert [row[0] for row in kinds[1:]] == ["rwse", "none"]
    assert kinds[1][1:4] == ["3", "2", "0.3000"] and kinds[1][-1] == "0.3333 ± 0.0759 (n=3)"
    assert {(r[0], r[1], r[2]) for r in page.tables["pe-scales"][1:]} == {
        ("rwse", "pe.rwse.steps", "8"), ("rwse", "pe.rwse.steps", "16")}
    assert {r[0] for r in page.tables["importances"][1:]} >= {"pe", "training.optimizer.lr"}
    text = " ".join(page.text)
    assert DATA_NOTE in text and "exact permutation test" in text and "Welch" in text
    assert "the mean of its new seeds) over 2 configuration(s) is -0.0600" in text
    # Self-contained: three embedded PNGs, no scripts, nothing fetched from elsewhere.
    assert len(page.images) == 3 and page.scripts == 0 and "http" not in raw
    for src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix) and base64.b64decode(src[len(prefix):])[:8] == PNG


def test_text_is_escaped_and_missing_parts_are_said(study, tmp_path):
    answer = build_pe_answer(study, "val/mae")
    path = write_report_html(tmp_path / "r.html", study_name="a<b>&c", metric="val/mae",
                             leaderboard=Table(("rank",), ()), confirmation=None, answer=answer,
                             plot_pngs=[tmp_path / "missing.png"],
                             notes=["<script>alert(1)</script>"])
    raw = path.read_text(encoding="utf-8")
    assert "<script" not in raw and "&lt;script&gt;alert(1)" in raw
    assert "a&lt;b&gt;&amp;c" in raw and "<img" not in raw
    assert 'id="leaderboard-empty"' in raw and 'id="confirmation-empty"' in raw


def test_plots_that_cannot_be_drawn_are_skipped(tmp_path, caplog):
    s = optuna.create_study(study_name="no_lr")  # neither lr nor warmup searched
    s.add_trial(create_trial(params={"pe": "none"}, distributions={"pe": DISTS["pe"]},
                             value=0.5))
    caplog.set_level("DEBUG", logger="mspe_sweep.sweep.answer_plots")
    files = publish_answer(s, "val/mae", tmp_path)
    assert sorted(f.name for f in files) == ["pe_kinds.html", "pe_kinds.png", "report.html"]
    assert "lr_warmup skipped" in caplog.text  # why, for whoever looks (debug)
    assert "confirm_curves" not in caplog.text  # no confirmation: nothing to say


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs /usr/bin/chromium "
                                                   "(apt-get install chromium)")
def test_report_renders_in_headless_chromium(study, tmp_path):
    publish_answer(study, "val/mae", tmp_path, confirmation=confirmation(), data_note=DATA_NOTE)
    url = (tmp_path / "report.html").as_uri()
    flags = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    page = Page(dom)
    assert set(TABLE_IDS) <= set(page.tables)
    assert page.tables["pe-kinds"][1][0] == "rwse" and DATA_NOTE in " ".join(page.text)
    screenshot = tmp_path / "report.png"
    subprocess.run([*flags, f"--screenshot={screenshot}", "--window-size=1400,3000", url],
                   capture_output=True, timeout=120, check=True)
    if os.environ.get("MSPE_UI_SCREENSHOT_DIR"):
        target = Path(os.environ["MSPE_UI_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, target / screenshot.name)
    # A blank 1400x3000 page compresses to a few KB; tables and plots make it far larger.
    assert screenshot.read_bytes()[:8] == PNG and screenshot.stat().st_size > 50_000
