"""gitops/monitoring: the shipped alert rules pass promtool's checks and unit tests, the dashboard
ConfigMap renders, and every query names only metrics the server or `modelops monitor` exports."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops.delivery import manifests
from modelops.delivery.manifests import ManifestError
from modelops.monitoring.render import PROM_HELP
from tests import prometheus

ROOT = Path(__file__).resolve().parents[2]
GITOPS = ROOT / "gitops"
RULE_TESTS = sorted((GITOPS / "monitoring" / "tests").glob("*.yaml"))
RULES_FILE = "modelops-rules.yaml"  # the name the test files' rule_files: list
Obj = dict[str, Any]

# Not in the server's registry: `modelops monitor` writes the drift series to a Prometheus textfile
# (labels model, env; the outcome series add version), every one with a HELP line of its own.
MONITOR_METRICS = set(PROM_HELP)
METRIC = re.compile(r"\bmodelops_[a-z0-9_]+\b")


def promtool() -> str:
    """promtool: make setup-tools puts it next to this interpreter (see `tests.prometheus.binary`)."""
    return prometheus.binary("promtool")


def server_metrics() -> set[str]:
    """Every sample name the server's registry exposes, read from its exposition's `# TYPE` lines.

    A fresh Metrics() exposes a TYPE line for every family, labelled children or not; a histogram's
    samples are its `_bucket`, `_sum` and `_count` (`_created` is client bookkeeping)."""
    sys.path.insert(0, str(ROOT / "serving" / "src"))
    from modelops_serving.metrics import Metrics

    names = set()
    for line in Metrics().exposition().decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            if name.endswith("_created"):
                continue
            names.update(
                [f"{name}_bucket", f"{name}_sum", f"{name}_count"] if kind == "histogram" else [name]
            )
    return names


@pytest.fixture(scope="module")
def monitoring() -> list[Obj]:
    """gitops/monitoring as kustomize renders it (what Argo CD applies)."""
    return manifests.render_monitoring(GITOPS)


def the(objects: list[Obj], kind: str) -> Obj:
    """The one rendered object of a kind."""
    (obj,) = [o for o in objects if o["kind"] == kind]
    return obj


def write_rules(rule: Obj, where: Path) -> Path:
    """The PrometheusRule's groups as the plain rule file promtool reads, next to copies of the tests."""
    where.mkdir(parents=True, exist_ok=True)
    for test in RULE_TESTS:
        shutil.copy(test, where / test.name)
    path = where / RULES_FILE
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """promtool with args, output captured."""
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, check=False)


def alerts(rule: Obj) -> dict[str, Obj]:
    """The alerting rules of a PrometheusRule by name."""
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}


# --- the rules, through promtool ---------------------------------------------------------------------


def test_rendered_objects(monitoring: list[Obj]) -> None:
    manifests.validate(monitoring, GITOPS)
    assert sorted(f"{o['kind']}/{o['metadata']['name']}" for o in monitoring) == [
        "ConfigMap/modelops-dashboard",
        "PrometheusRule/modelops",
    ]
    assert {o["metadata"]["namespace"] for o in monitoring} == {"monitoring"}


def test_promtool_checks_the_shipped_rules(monitoring: list[Obj], tmp_path: Path) -> None:
    rules = write_rules(the(monitoring, "PrometheusRule"), tmp_path)
    proc = run_promtool("check", "rules", str(rules), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alerts(the(monitoring, 'PrometheusRule')))} rules found" in proc.stdout


def test_promtool_unit_tests_pass(monitoring: list[Obj], tmp_path: Path) -> None:
    write_rules(the(monitoring, "PrometheusRule"), tmp_path)
    proc = run_promtool("test", "rules", *(t.name for t in RULE_TESTS), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(RULE_TESTS)


@pytest.mark.parametrize(
    ("alert", "old", "new"),
    [
        ("ModelopsHighErrorRate", ") > 0.05", ") > 0.5"),
        ("ModelopsHighLatencyP99", "))) > 0.1", "))) > 1"),
        ("ModelopsModelMissing", "[1d]", "[1m]"),
        ("ModelopsDriftScoreHigh", "> 0.5", "> 0.7"),
        ("ModelopsMonitorStale", "2 * 86400", "3 * 86400"),
        ("ModelopsConceptDrift", "== 1", "> 1"),
        ("ModelopsFeedbackDropping", "[1h]", "[5m]"),
        ("ModelopsFeedbackDropping", "increase(", "0 * increase("),
    ],
)
def test_the_unit_tests_catch_a_loosened_rule(
    monitoring: list[Obj], tmp_path: Path, alert: str, old: str, new: str
) -> None:
    rule = copy.deepcopy(the(monitoring, "PrometheusRule"))
    target = alerts(rule)[alert]
    assert old in target["expr"]
    target["expr"] = target["expr"].replace(old, new)
    write_rules(rule, tmp_path)
    proc = run_promtool("test", "rules", *(t.name for t in RULE_TESTS), cwd=tmp_path)
    assert proc.returncode != 0
    assert f"alertname: {alert}," in proc.stdout + proc.stderr


def test_every_alert_is_tested_firing_and_silent(monitoring: list[Obj]) -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        doc = yaml.safe_load(path.read_text())
        assert doc["rule_files"] == [RULES_FILE], path
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = set(alerts(the(monitoring, "PrometheusRule")))
    assert names == firing, f"alerts never tested firing: {names - firing}"
    # A lone firing case cannot tell a threshold from "always on".
    assert names <= silent, f"alerts never tested silent: {names - silent}"


def test_missing_model_covers_exactly_the_env_namespaces(monitoring: list[Obj]) -> None:
    expr = alerts(the(monitoring, "PrometheusRule"))["ModelopsModelMissing"]["expr"]
    absent = set(re.findall(r'absent\(modelops_model_info\{namespace="([^"]+)"', expr))
    namespaces = {manifests.render(env, GITOPS)[0]["metadata"]["namespace"] for env in manifests.envs(GITOPS)}
    assert absent == namespaces


def test_alerts_name_only_exported_metrics(monitoring: list[Obj]) -> None:
    known = server_metrics() | MONITOR_METRICS
    for name, rule in alerts(the(monitoring, "PrometheusRule")).items():
        used = set(METRIC.findall(rule["expr"]))
        assert used, name
        assert used <= known, f"{name} uses {used - known}, which nothing exports"


# --- the dashboard -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard(monitoring: list[Obj]) -> Obj:
    """The dashboard JSON inside the rendered ConfigMap."""
    cm = the(monitoring, "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"  # what the Grafana sidecar watches
    (text,) = cm["data"].values()
    assert text == (GITOPS / "monitoring" / "dashboards" / "modelops.json").read_text()
    return json.loads(text)


def test_dashboard_has_the_panels(dashboard: Obj) -> None:
    titles = [p["title"] for p in dashboard["panels"]]
    for wanted in ("Traffic", "Latency", "Batch size", "Predictions by class", "Model version"):
        assert wanted in titles
    assert len({p["id"] for p in dashboard["panels"]}) == len(titles)
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in dashboard["panels"]:
        # One Prometheus picked by the $datasource variable, never a uid of someone's Grafana.
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            for var in re.findall(r"\$(\w+)", target["expr"]):
                assert var in variables or var.startswith("__"), (panel["title"], var)


def test_dashboard_queries_name_only_exported_metrics(dashboard: Obj) -> None:
    known = server_metrics() | MONITOR_METRICS
    for panel in dashboard["panels"]:
        used = {m for t in panel["targets"] for m in METRIC.findall(t["expr"])}
        assert used, f"panel {panel['title']!r} queries no modelops metric"
        assert used <= known, f"panel {panel['title']!r} uses {used - known}, which nothing exports"
    (query,) = [v for v in dashboard["templating"]["list"] if v["type"] == "query"]
    assert set(METRIC.findall(query["definition"])) <= known


# --- the schema ----------------------------------------------------------------------------------


def _alert(rule: Obj) -> Obj:
    return rule["spec"]["groups"][0]["rules"][0]


SCHEMA_RULES: list[tuple[str, Any, str]] = [
    ("severity", lambda r: _alert(r)["labels"].pop("severity"), "labels: 'severity' is a required property"),
    ("severity value", lambda r: _alert(r)["labels"].update(severity="page"), "'page' is not one of"),
    ("summary", lambda r: _alert(r)["annotations"].pop("summary"), "'summary' is a required property"),
    ("for", lambda r: _alert(r).update({"for": "5 minutes"}), "(a Prometheus duration such as 5m or 1h30m)"),
    ("typo", lambda r: _alert(r).update(exprs="up"), "('exprs' was unexpected)"),
    ("expr", lambda r: _alert(r).update(expr=""), "expr: '' should be non-empty"),
    (
        "record name",
        lambda r: r["spec"]["groups"][0]["rules"].append({"record": "a-b", "expr": "1"}),
        "rules[6].record: 'a-b' does not match",
    ),
    ("groups", lambda r: r["spec"].update(groups=[]), "spec.groups: [] should be non-empty"),
]


@pytest.mark.parametrize(
    ("mutate", "message"), [r[1:] for r in SCHEMA_RULES], ids=[r[0] for r in SCHEMA_RULES]
)
def test_prometheusrule_schema(monitoring: list[Obj], mutate: Any, message: str) -> None:
    rule = copy.deepcopy(the(monitoring, "PrometheusRule"))
    rule["spec"]["groups"][0]["rules"].append({"record": "modelops:requests:rate5m", "expr": "1"})
    manifests.validate([rule], GITOPS)  # a recording rule is fine too
    mutate(rule)
    with pytest.raises(ManifestError) as info:
        manifests.validate([rule], GITOPS, where="monitoring")
    assert message in str(info.value)
    assert str(info.value).startswith("monitoring: ")


# --- make setup-tools ------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="setup-tools installs from Debian packages")
def test_make_setup_tools_installs_promtool_from_the_debian_package(tmp_path: Path) -> None:
    """The clean-machine path: no promtool nor prometheus anywhere, so both are fetched (no root)
    into TOOLS_BIN (prometheus: the canary analysis tests run a real server)."""
    bin_dir = tmp_path / "bin"
    # -o setup: take the venv as made (no uv sync from a test); PROMTOOL names a tool nobody has.
    make = ["make", "-f", str(ROOT / "Makefile"), "--no-print-directory", "-o", "setup", "setup-tools"]
    proc = subprocess.run(
        [
            *make,
            "PROMTOOL=promtool-not-installed",
            "PROMETHEUS=prometheus-not-installed",
            f"TOOLS_BIN={bin_dir}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"promtool installed in {bin_dir}" in proc.stdout, proc.stdout + proc.stderr
    version = subprocess.run([bin_dir / "promtool", "--version"], capture_output=True, text=True, check=True)
    assert "promtool, version" in version.stdout + version.stderr
    assert f"prometheus installed in {bin_dir}" in proc.stdout, proc.stdout + proc.stderr
    version = subprocess.run(
        [bin_dir / "prometheus", "--version"], capture_output=True, text=True, check=True
    )
    assert "prometheus, version" in version.stdout + version.stderr
