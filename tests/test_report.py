"""The HTML report: built from run directories, opened in a real headless browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from helpers import keyword_rows, tiny_config, write_csv

BROWSER = next(
    (b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
)


@pytest.fixture
def report(tiny_bert, keyword_data, tmp_path):
    import tunelab
    from tunelab.cli import main
    from tunelab.workflows.suite import run_suite

    a = tunelab.train(tiny_config(tiny_bert, keyword_data, tmp_path / "runs"))
    b = tunelab.train(
        tiny_config(
            tiny_bert,
            keyword_data,
            tmp_path / "runs",
            method="lora",
            **{"output.name": "lora", "training.lr": 1e-2},
        )
    )
    cf = write_csv(
        tmp_path / "s" / "cf.csv",
        [{"text": f"he said it was {r['text']}"} for r in keyword_rows(12, 3)],
    )
    suite = {
        "name": "mini",
        "tasks": [
            {"name": "dev", "data": str(keyword_data["validation"])},
            {"name": "cf", "kind": "counterfactual", "data": str(cf), "attributes": ["gender"]},
        ],
        "robustness": {"perturbations": ["typos", "casing"]},
    }
    (tmp_path / "s" / "mini.yaml").write_text(yaml.safe_dump(suite))
    run_suite(str(a.run_dir), tmp_path / "s" / "mini.yaml")
    run_suite(str(b.run_dir), tmp_path / "s" / "mini.yaml")
    out = tmp_path / "report.html"
    assert main(["report", str(a.run_dir), str(b.run_dir), "--output", str(out)]) == 0
    return out


def test_report_holds_tables_and_plots(report):
    text = report.read_text()
    assert text.count("<img ") == len(re.findall(r"src='data:image/png;base64,", text)) >= 4
    for needle in (
        "Validation metrics",
        "training loss",
        "robustness",
        "counterfactual",
        "Sample predictions",
        "Config · lora",
    ):
        assert needle in text
    # both runs ran the suite: one chart and one table per suite task compare them
    assert text.count("alt='robustness mini/dev'") == 1
    assert "<th>measure</th><th>run</th><th>lora</th>" in text
    assert "<h2>Suite mini · dev</h2>" in text and text.count("<h2>Suite mini") == 2
    from tunelab.errors import RunDirError
    from tunelab.reporting.report import build_report

    with pytest.raises(RunDirError, match="exists; pass --overwrite"):
        build_report([report.parent / "runs" / "run"], report)


@pytest.mark.skipif(BROWSER is None and not os.environ.get("CI"), reason="no Chromium here")
def test_report_opens_in_a_headless_browser(report, tmp_path):
    assert BROWSER is not None, "CI must install Chromium (.ci/run does)"
    cmd = [
        BROWSER,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        report.as_uri(),
    ]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    plots = int(re.search(r'data-plots="(\d+)"', dom).group(1))
    ok = int(re.search(r'data-plots-ok="(\d+)"', dom).group(1))
    errors = int(re.search(r'data-errors="(\d+)"', dom).group(1))
    assert plots >= 4 and ok == plots and errors == 0
