"""The Helm chart and the plain manifests, checked with Helm's own engine (helm-python-sdk) and the
Kubernetes API schemas of the chart's lowest supported version (kubernetes-validate)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from render import CHART, CRD_FILES, DEPLOY, ROOT, key, notes, render, without_helm_labels

KUBE_VERSION = "1.33.0"
# Kinds whose schema is not in Kubernetes itself (Prometheus Operator's CRD).
CRD_KINDS = {"ServiceMonitor"}

PHONE_RULES = [
    {"apiGroups": ["cloudphone.io"], "resources": ["cloudphones", "cloudphoneschedules"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["cloudphone.io"], "resources": ["cloudphones/status", "cloudphoneschedules/status"], "verbs": ["patch"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]
CREDENTIALS_RULES = [
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
]
ACCOUNT_EVENT_RULES = [{"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}]
ACCOUNT_RULES = [
    {"apiGroups": ["cloudphone.io"], "resources": ["cloudphoneaccounts"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["cloudphone.io"], "resources": ["cloudphoneaccounts/status"], "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
]
CRD_RULES = [
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "resourceNames": ["cloudphones.cloudphone.io"],
        "verbs": ["get", "list", "watch"],
    },
]
LEASE_RULES = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": ["cloudphone-operator"],
        "verbs": ["get", "update"],
    },
]

FEATURES = {
    "defaults": {},
    "service-monitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
    "pdb": {"podDisruptionBudget": {"enabled": True}},
    "grafana-dashboard": {"metrics": {"grafanaDashboard": {"enabled": True, "namespace": "monitoring"}}},
    "watch-namespaces": {"watchNamespaces": ["fleet-a", "fleet-b"]},
    "selector-and-args": {"labelSelector": "shard=a", "extraArgs": ["--backup-grace-period=5m"]},
    "simulate": {"vendor": {"simulate": True}, "existingSecret": ""},
    "single-replica": {"replicaCount": 1, "leaderElection": {"enabled": False}},
    "scheduling": {
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {}},
        "podAnnotations": {"a": "b"},
        "podLabels": {"team": "phones"},
        "imagePullSecrets": [{"name": "regcred"}],
    },
}


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def test_lint_is_clean_in_strict_mode():
    report = helm.lint(str(CHART), strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert serious == [], serious


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_every_rendered_object_is_valid_for_the_lowest_supported_kubernetes(feature):
    objects = render(FEATURES[feature])
    assert objects
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_every_container_runs_locked_down(feature):
    (deployment,) = by_kind(render(FEATURES[feature]), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"] + pod.get("initContainers", []):
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_only_the_operator_pods_get_a_service_account_token():
    objects = render()
    (sa,) = by_kind(objects, "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    (deployment,) = by_kind(objects, "Deployment")
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is True


def test_rbac_is_exactly_the_least_privilege_set_of_the_install_docs():
    objects = render()
    cluster_roles = {r["metadata"]["name"]: r["rules"] for r in by_kind(objects, "ClusterRole")}
    assert cluster_roles == {
        "cloudphone-operator": PHONE_RULES,
        "cloudphone-operator-crd": CRD_RULES,
        "cloudphone-operator-accounts": ACCOUNT_RULES,
    }
    roles = {r["metadata"]["name"]: r for r in by_kind(objects, "Role")}
    assert sorted(roles) == [
        "cloudphone-operator-account-events",
        "cloudphone-operator-credentials",
        "cloudphone-operator-leader-election",
    ]
    account_events = roles.pop("cloudphone-operator-account-events")
    assert account_events["metadata"]["namespace"] == "default", "where events of cluster-scoped objects go"
    assert account_events["rules"] == ACCOUNT_EVENT_RULES
    assert all(r["metadata"]["namespace"] == "cloudphone-system" for r in roles.values())
    assert roles["cloudphone-operator-leader-election"]["rules"] == LEASE_RULES
    assert roles["cloudphone-operator-credentials"]["rules"] == CREDENTIALS_RULES
    bindings = by_kind(objects, "ClusterRoleBinding")
    assert sorted(b["roleRef"]["name"] for b in bindings) == [
        "cloudphone-operator",
        "cloudphone-operator-accounts",
        "cloudphone-operator-crd",
    ]
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "cloudphone-operator", "namespace": "cloudphone-system"}
        ]
    install = (ROOT / "docs" / "install.md").read_text()
    for row in [
        "| `cloudphone.io` | `cloudphones` | `get`, `list`, `watch` |",
        "| `cloudphone.io` | `cloudphones/status` | `patch` |",
        "| `cloudphone.io` | `cloudphoneschedules` | `get`, `list`, `watch` |",
        "| `cloudphone.io` | `cloudphoneschedules/status` | `patch` |",
        "| `events.k8s.io` | `events` | `create`, `patch` |",
        "| `coordination.k8s.io` | `leases` | `get`, `create`, `update` |",
        "| (core) | `secrets` | `get`, `list`, `watch` |",
        "| `cloudphone.io` | `cloudphoneaccounts` | `get`, `list`, `watch` |",
        "| `cloudphone.io` | `cloudphoneaccounts/status` | `patch` |",
        "| (core) | `namespaces` | `list`, `watch` |",
        "| `apiextensions.k8s.io` | `customresourcedefinitions` | `get`, `list`, `watch` |",
    ]:
        assert row in install, row


def test_watched_namespaces_get_namespaced_roles_and_no_cluster_role():
    objects = render(FEATURES["watch-namespaces"])
    # Only the read of the one CRD (its schema revision is checked before ticks) and the accounts
    # (cluster-scoped, with namespace labels for their selectors) stay cluster-wide.
    assert [r["rules"] for r in by_kind(objects, "ClusterRole")] == [CRD_RULES, ACCOUNT_RULES]
    assert [b["roleRef"]["name"] for b in by_kind(objects, "ClusterRoleBinding")] == [
        "cloudphone-operator-crd",
        "cloudphone-operator-accounts",
    ]
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r["rules"] for r in by_kind(objects, "Role")}
    assert roles == {
        ("fleet-a", "cloudphone-operator"): PHONE_RULES,
        ("fleet-b", "cloudphone-operator"): PHONE_RULES,
        ("cloudphone-system", "cloudphone-operator-leader-election"): LEASE_RULES,
        ("cloudphone-system", "cloudphone-operator-credentials"): CREDENTIALS_RULES,
        ("default", "cloudphone-operator-account-events"): ACCOUNT_EVENT_RULES,
    }
    args = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=fleet-a" in args and "--namespace=fleet-b" in args


def test_values_reach_the_operator_flags():
    objects = render(
        {"tickInterval": "10s", "restoreEstimate": "90s", "labelSelector": "shard=a", "extraArgs": ["--debounce=2s"]}
    )
    container = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[0] == "run"
    for flag in [
        "--tick-interval=10s",
        "--restore-estimate=90s",
        "--selector=shard=a",
        "--debounce=2s",
        "--leader-election=true",
        "--lease-namespace=cloudphone-system",
        "--credentials-secret=cloudphone-system/koophone-credentials",
        "--vendor-url=https://koophone.myhuaweicloud.com",
    ]:
        assert flag in args, (flag, args)
    assert "volumeMounts" not in container, "the credentials are read from the API, not mounted"
    simulated = by_kind(render(FEATURES["simulate"]), "Role")
    assert all("secrets" not in str(r["rules"]) for r in simulated), "no Secret access when simulating"


def test_the_own_accounts_namespaces_reach_the_flags_and_the_multi_tenant_example_renders():
    args = lambda objects: by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in args(render()) if a.startswith("--own-account-")], "unset: no flag"
    example = yaml.safe_load((ROOT / "examples" / "values-multi-tenant.yaml").read_text())
    objects = render(example)
    assert "--own-account-namespaces=platform-ops" in args(objects)
    assert "--own-account-namespace-selector=tenant=platform" in args(objects)
    assert {a["metadata"]["name"] for a in by_kind(objects, "CloudPhoneAccount")} == {"team-a", "team-b"}
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmError, match="namespaces"):
            chart.validate_schema(chart.merge_values({"vendor": {"namespaces": ["Not_A_Namespace"]}}))


def test_the_own_accounts_limits_reach_the_flags():
    args = lambda objects: by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in args(render()) if a.startswith("--own-account-calls")], "unset: no bound"
    limited = args(render({"vendor": {"limits": {"callsInFlight": 4, "callsPerSecond": 20}}}))
    assert "--own-account-calls-in-flight=4" in limited
    assert "--own-account-calls-per-second=20" in limited
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmError, match="callsPerSecond"):
            chart.validate_schema(chart.merge_values({"vendor": {"limits": {"callsPerSecond": 0}}}))


def test_the_own_accounts_allowed_users_reach_the_flag():
    args = lambda objects: by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in args(render()) if a.startswith("--own-account-allowed")], "unset: any user"
    listed = args(render({"vendor": {"allowedUserIds": ["alice", "bob"]}}))
    assert "--own-account-allowed-user-ids=alice,bob" in listed
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmError, match="allowedUserIds"):
            chart.validate_schema(chart.merge_values({"vendor": {"allowedUserIds": ["a b"]}}))


def test_without_leader_election_the_lease_still_keeps_the_intents_record():
    objects = render({"leaderElection": {"enabled": False}, "replicaCount": 1})
    roles = {r["metadata"]["name"]: r["rules"] for r in by_kind(objects, "Role")}
    assert roles["cloudphone-operator-leader-election"] == LEASE_RULES, "a restart reads the last process's intents-until"
    args = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    for flag in ["--leader-election=false", "--lease-name=cloudphone-operator", "--lease-namespace=cloudphone-system"]:
        assert flag in args, (flag, args)


def test_without_leader_election_a_rollout_never_runs_two_pods():
    (deployment,) = by_kind(render({"leaderElection": {"enabled": False}, "replicaCount": 1}), "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    (deployment,) = by_kind(render(), "Deployment")
    assert "strategy" not in deployment["spec"], "with a leader, a rolling update hands the Lease over"


def test_optional_objects_appear_only_when_switched_on():
    assert by_kind(render(), "ServiceMonitor") == []
    assert by_kind(render(), "PodDisruptionBudget") == []
    (monitor,) = by_kind(render(FEATURES["service-monitor"]), "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "http-metrics"
    (pdb,) = by_kind(render(FEATURES["pdb"]), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1


@pytest.mark.parametrize(
    "values, words",
    [
        ({"tickIntervall": "30s"}, ["tickIntervall"]),
        ({"tickInterval": "-30s"}, ["tickInterval"]),
        ({"tickInterval": "0s"}, ["tickInterval"]),
        ({"replicaCount": 0}, ["replicaCount"]),
        ({"logFormat": "xml"}, ["logFormat"]),
        ({"metrics": {"prot": 9090}}, ["prot"]),
        ({"image": {"pullPolicy": "Sometimes"}}, ["pullPolicy"]),
    ],
)
def test_bad_values_are_refused_by_the_schema_naming_the_key(values, words):
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmError) as refused:
            chart.validate_schema(chart.merge_values(values))
    for word in words:
        assert word in str(refused.value)


def test_inconsistent_values_fail_with_a_clear_message():
    with pytest.raises(helm.HelmError, match="existingSecret"):
        render({"existingSecret": ""})
    with pytest.raises(helm.HelmError, match="leaderElection"):
        render({"leaderElection": {"enabled": False}})


def test_a_disruption_budget_that_would_block_every_drain_is_refused():
    # One replica under minAvailable 1 (or any minAvailable not below the replicas): no eviction is
    # ever allowed, so a node drain waits forever.
    for values in (
        {"replicaCount": 1, "leaderElection": {"enabled": False}, "podDisruptionBudget": {"enabled": True}},
        {"replicaCount": 1, "podDisruptionBudget": {"enabled": True, "minAvailable": 0}},
        {"replicaCount": 2, "podDisruptionBudget": {"enabled": True, "minAvailable": 2}},
    ):
        with pytest.raises(helm.HelmError, match="podDisruptionBudget") as refused:
            render(values)
        assert "drain" in str(refused.value), values
    objects = render({"replicaCount": 2, "podDisruptionBudget": {"enabled": True}})
    (pdb,) = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"]["minAvailable"] == 1
    assert not [o for o in render({"replicaCount": 1}) if o["kind"] == "PodDisruptionBudget"]


def test_values_yaml_has_a_comment_on_every_key():
    lines = (CHART / "values.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*[A-Za-z][A-Za-z0-9]*:", line):
            previous = next(l for l in reversed(lines[:i]) if l.strip())
            assert previous.strip().startswith("#"), f"values.yaml: no comment above {line.strip()!r}"


def test_the_chart_crds_are_the_generated_crds():
    assert sorted(p.name for p in (ROOT / "crds").glob("*.yaml")) == sorted(CRD_FILES)
    assert sorted(p.name for p in (CHART / "crds").glob("*.yaml")) == sorted(CRD_FILES)
    for crd in CRD_FILES:
        generated = (ROOT / "crds" / crd).read_text()
        assert (CHART / "crds" / crd).read_text() == generated, f"charts/cloudphone-operator/crds/{crd} is stale"
        assert (DEPLOY / crd).read_text() == generated, f"deploy/{crd} is stale"


def test_chart_metadata():
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2"
    assert meta["kubeVersion"] == ">=1.33.0-0"
    assert meta["appVersion"]
    cargo = (ROOT / "Cargo.toml").read_text()
    assert f'version = "{meta["appVersion"]}"' in cargo, "appVersion follows the crate's version"


def test_the_chart_and_the_crate_carry_the_same_licence():
    # NB: Chart.yaml has no licence field; Artifact Hub reads this annotation.
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    cargo = (ROOT / "Cargo.toml").read_text()
    assert (meta.get("annotations") or {}).get("artifacthub.io/license") == "Apache-2.0"
    assert 'license = "Apache-2.0"' in cargo
    assert "Apache License" in (ROOT / "LICENSE").read_text()


def test_notes_say_how_to_create_a_first_cloudphone():
    text = notes()
    assert "kind: CloudPhone" in text and "kubectl get cph" in text
    assert "create secret generic koophone-credentials" in text


def deploy_objects():
    objects = []
    for doc in yaml.safe_load_all((DEPLOY / "operator.yaml").read_text()):
        if doc:
            objects.append(doc)
    return objects


def test_plain_manifests_agree_with_the_default_rendering():
    rendered = {key(o): without_helm_labels(o) for o in render()}
    plain = {key(o): o for o in deploy_objects()}
    assert sorted(plain) == sorted(rendered), "deploy/ is stale: run python3 scripts/render-deploy.py"
    for k in rendered:
        assert plain[k] == rendered[k], f"{k} differs from the chart: run python3 scripts/render-deploy.py"


def test_plain_manifests_are_valid_for_the_lowest_supported_kubernetes():
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] != "CustomResourceDefinition":
                kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    for crd in CRD_FILES:
        kubernetes_validate.validate(yaml.safe_load((DEPLOY / crd).read_text()), KUBE_VERSION, strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_the_kustomization_builds_into_the_same_objects():
    built = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY)], check=True, capture_output=True, text=True
    ).stdout
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(built) if d)
    assert kinds == sorted(
        ["Namespace"] + ["CustomResourceDefinition"] * len(CRD_FILES) + [o["kind"] for o in deploy_objects()]
    )
    for doc in yaml.safe_load_all(built):
        if doc and doc["kind"] not in ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            expected = "default" if doc["metadata"]["name"].endswith("-account-events") else "cloudphone-system"
            assert doc["metadata"]["namespace"] == expected, key(doc)


def test_the_image_is_a_static_binary_on_a_shell_less_non_root_base():
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
    assert len(stages) >= 2, "multi-stage build"
    assert stages[-1].startswith(("gcr.io/distroless/static", "scratch")), stages[-1]
    final = dockerfile.split("FROM " + stages[-1], 1)[1]
    assert re.search(r"^USER\s+65532", final, re.MULTILINE)
    assert "RUN " not in final, "nothing runs in the final stage: it has no shell"
    for label in ["title", "description", "version", "source"]:
        assert f"org.opencontainers.image.{label}=" in final, label
    assert "--release" in dockerfile and "--locked" in dockerfile


def test_accounts_in_values_render_cloudphone_accounts_and_reach_the_flags():
    objects = render(
        {
            "accounts": [
                {"name": "team-a", "existingSecret": "koophone-team-a", "namespaces": ["team-a"]},
                {
                    "name": "team-b",
                    "existingSecret": "koophone-team-b",
                    "vendorUrl": "https://koophone.myhuaweicloud.com",
                    "namespaceSelector": {"matchLabels": {"team": "b"}},
                    "limits": {"callsInFlight": 2, "callsPerSecond": 10},
                    "allowedUserIds": ["u-team-b", "kiosk_1"],
                },
            ],
            "accountLabels": {"shard": "a"},
            "accountSelector": "shard=a",
            "vendor": {"allowedHosts": ["*.myhuaweicloud.com", "koophone.example.internal:8443"]},
        }
    )
    accounts = {a["metadata"]["name"]: a for a in by_kind(objects, "CloudPhoneAccount")}
    assert sorted(accounts) == ["team-a", "team-b"]
    assert accounts["team-a"]["spec"] == {"credentialsSecretRef": {"name": "koophone-team-a"}, "namespaces": ["team-a"]}
    assert accounts["team-b"]["spec"]["limits"] == {"callsInFlight": 2, "callsPerSecond": 10}
    assert accounts["team-b"]["spec"]["allowedUserIds"] == ["u-team-b", "kiosk_1"]
    assert accounts["team-b"]["spec"]["namespaceSelector"] == {"matchLabels": {"team": "b"}}
    assert accounts["team-a"]["metadata"]["labels"]["shard"] == "a"
    assert "namespace" not in accounts["team-a"]["metadata"], "cluster-scoped"
    args = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--allowed-vendor-hosts=*.myhuaweicloud.com,koophone.example.internal:8443" in args
    assert "--account-selector=shard=a" in args
    # Each rendered account is valid against the generated CRD's schema.
    import jsonschema

    crd = yaml.safe_load((ROOT / "crds" / "cloudphone.io_cloudphoneaccounts.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for account in accounts.values():
        jsonschema.validate(account, schema)


@pytest.mark.parametrize(
    "bad",
    [
        {"accounts": [{"name": "team-a"}]},
        {"accounts": [{"name": "team-a", "existingSecret": "s", "namespace": ["team-a"]}]},
        {"accounts": [{"name": "default", "existingSecret": "s"}]},
        {"accounts": [{"name": "team-a", "existingSecret": "s", "vendorUrl": "https://x@evil.example"}]},
        {"accounts": [{"name": "team-a", "existingSecret": "s", "limits": {"callsInFlight": 0}}]},
        {"accounts": [{"name": "team-a", "existingSecret": "s", "allowedUserIds": ["a user"]}]},
        {"vendor": {"allowedHosts": []}},
    ],
)
def test_the_values_schema_refuses_a_bad_account(bad):
    with pytest.raises(Exception, match="schema"):
        render(bad)


def test_the_grafana_dashboard_ships_as_a_sidecar_configmap_and_matches_the_docs():
    assert by_kind(render(), "ConfigMap") == [], "off by default"
    (cm,) = by_kind(render(FEATURES["grafana-dashboard"]), "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring"
    shipped = cm["data"]["cloudphone-operator.json"]
    import json

    dashboard = json.loads(shipped)
    assert dashboard["uid"] == "cloudphone-operator" and dashboard["panels"]
    assert (ROOT / "docs" / "grafana-dashboard.json").read_text() == (
        CHART / "dashboards" / "cloudphone-operator.json"
    ).read_text(), "docs/grafana-dashboard.json differs from the chart's dashboard"
