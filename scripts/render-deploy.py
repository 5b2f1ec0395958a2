#!/usr/bin/env python3
"""Regenerates deploy/ (the plain manifests for `kubectl apply -k deploy/`) from the Helm chart's
default rendering. Run after changing the chart: python3 scripts/render-deploy.py
(needs helm-python-sdk and PyYAML: ./run-tests.sh installs them into .venv)."""

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "chart"))

import yaml  # noqa: E402
from render import CHART, CRD_FILES, DEPLOY, NAMESPACE, ROOT, key, render, without_helm_labels  # noqa: E402

HEADER = "# Generated from charts/cloudphone-operator by scripts/render-deploy.py: do not edit by hand.\n"


def main() -> None:
    DEPLOY.mkdir(exist_ok=True)
    objects = sorted((without_helm_labels(o) for o in render()), key=key)
    (DEPLOY / "operator.yaml").write_text(
        HEADER + yaml.safe_dump_all(objects, sort_keys=True, explicit_start=True)
    )
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    (DEPLOY / "namespace.yaml").write_text(HEADER + yaml.safe_dump(namespace, sort_keys=True))
    for crd in CRD_FILES:
        shutil.copyfile(ROOT / "crds" / crd, DEPLOY / crd)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # NB: no `namespace:` here: every object names its own, and the Role for the events of
        # CloudPhoneAccounts (cluster-scoped) must stay in `default`, where those events go.
        "resources": ["namespace.yaml", *CRD_FILES, "operator.yaml"],
    }
    (DEPLOY / "kustomization.yaml").write_text(HEADER + yaml.safe_dump(kustomization, sort_keys=False))
    assert CHART.exists()
    print(f"wrote {DEPLOY}")


if __name__ == "__main__":
    main()
