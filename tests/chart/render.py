"""Renders the Helm chart with Helm's own engine (helm-python-sdk, no cluster), and turns the chart's
default rendering into the plain manifests of deploy/. Shared by the chart tests and
scripts/render-deploy.py, so that both read the chart the same way."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "cloudphone-operator"
DEPLOY = ROOT / "deploy"
# The generated CRDs, as crds/, the chart and deploy/ hold them.
CRD_FILES = [
    "cloudphone.io_cloudphoneaccounts.yaml",
    "cloudphone.io_cloudphones.yaml",
    "cloudphone.io_cloudphoneschedules.yaml",
]
RELEASE = "cloudphone-operator"
NAMESPACE = "cloudphone-system"
# Labels that only make sense for a Helm release; the plain manifests leave them out.
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")


def render(values: dict[str, Any] | None = None, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """Every object the chart renders with these values (merged over values.yaml), CRDs excluded."""
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values or {}, name=RELEASE, namespace=namespace, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
    return objects


def notes(values: dict[str, Any] | None = None) -> str:
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))


def without_helm_labels(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as the plain manifests hold it: no Helm-release labels."""
    obj = copy.deepcopy(obj)
    for meta in _metadatas(obj):
        labels = meta.get("labels") or {}
        for label in HELM_ONLY_LABELS:
            labels.pop(label, None)
    return obj


def _metadatas(obj: dict[str, Any]):
    yield obj.setdefault("metadata", {})
    template = obj.get("spec", {}).get("template")
    if isinstance(template, dict):
        yield template.setdefault("metadata", {})


def key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata", {})
    return (obj["kind"], meta.get("namespace", ""), meta["name"])
