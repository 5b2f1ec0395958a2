"""The chart's PrometheusRule: `promtool check rules` on its rendering, and `promtool test rules` of every
alert against series shaped like a real run's metrics (tests/chart/alerts.test.yaml). Debian's
`prometheus` package ships promtool; ./run-tests.sh installs it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from render import CHART, ROOT, render

HERE = Path(__file__).resolve().parent


def rules_file(tmp_path: Path, values: dict | None = None) -> Path:
    objects = render({"metrics": {"prometheusRule": {"enabled": True, **(values or {})}}})
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    return path


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: apt-get install prometheus (./run-tests.sh does)"
    return path


def test_the_rendered_rules_pass_promtool_check(tmp_path):
    path = rules_file(tmp_path)
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    rules = [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]
    assert len(rules) >= 9, "every alert of the chart rendered"
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout, result.stdout


def test_every_alert_fires_when_it_should_and_not_before(tmp_path):
    rules_file(tmp_path)
    shutil.copy(HERE / "alerts.test.yaml", tmp_path / "alerts.test.yaml")
    result = subprocess.run(
        [promtool(), "test", "rules", "alerts.test.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_and_has_a_runbook_section(tmp_path):
    spec = yaml.safe_load(rules_file(tmp_path).read_text())
    alerts = [r["alert"] for g in spec["groups"] for r in g["rules"]]
    tested = {t["alertname"] for t in yaml.safe_load((HERE / "alerts.test.yaml").read_text())["tests"][0]["alert_rule_test"]}
    assert set(alerts) == tested
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    for alert in alerts:
        assert f"\n## {alert}\n" in runbook, alert


def test_thresholds_come_from_values(tmp_path):
    spec = yaml.safe_load(
        rules_file(
            tmp_path,
            {
                "oldestUnbackedSeconds": 3600,
                "needAPersonFor": "2h",
                "notReadySeconds": 600,
                "statusWritesFailingFor": "45m",
                "preparesFailingRatio": 0.5,
                "preparesFailingFor": "2h",
                "waveLatePhones": 10,
                "waveLateFor": "1h",
            },
        ).read_text()
    )
    rules = {r["alert"]: r for g in spec["groups"] for r in g["rules"]}
    assert rules["CloudPhoneBackupTooOld"]["expr"].endswith("> 3600")
    assert rules["CloudPhonesNeedAPerson"]["for"] == "2h"
    assert rules["CloudPhoneNotReady"]["expr"].endswith("> 600")
    assert rules["CloudPhoneStatusWritesFailing"]["for"] == "45m"
    assert rules["CloudPhonePreparesFailing"]["expr"].rstrip().endswith("> 0.5")
    assert rules["CloudPhonePreparesFailing"]["for"] == "2h"
    assert rules["CloudPhoneWaveLate"]["expr"].endswith("> 10")
    assert rules["CloudPhoneWaveLate"]["for"] == "1h"
    assert CHART.exists()
