"""What a release publishes, checked before any tag is pushed: the chart pinned to the image's digest,
the workflows and the Dockerfile through their linters, every action pinned to a commit, the krew
manifest the release fills in, and the versions that must agree (Cargo.toml, Chart.yaml, CHANGELOG.md)."""

from __future__ import annotations

import helm_python as helm
import pytest

from render import CHART, render

DIGEST = "sha256:" + "0123456789abcdef" * 4
KUBE_VERSION = "v1.33.0"


def operator_image(values):
    (deployment,) = [o for o in render(values) if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container["image"]


def test_the_chart_names_the_image_by_digest_when_one_is_pinned():
    repo = "ghcr.io/cloudphone-operator/cloudphone-operator"
    assert operator_image({"image": {"digest": DIGEST}}) == f"{repo}@{DIGEST}"
    # The digest wins over a tag: a tag can be moved, the digest cannot.
    assert operator_image({"image": {"digest": DIGEST, "tag": "0.1.0"}}) == f"{repo}@{DIGEST}"
    # Without one, the tag (or the appVersion) as before.
    assert operator_image({}) == f"{repo}:0.1.0"
    assert operator_image({"image": {"tag": "dev"}}) == f"{repo}:dev"


def test_the_chart_pinned_by_digest_lints_clean_in_strict_mode():
    report = helm.lint(str(CHART), {"image": {"digest": DIGEST}}, strict=True, kube_version=KUBE_VERSION)
    assert report["errors"] == []
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert serious == [], serious


@pytest.mark.parametrize("digest", ["0123abcd", "sha256:XYZ", "sha256:" + "0" * 63, "sha512:" + "0" * 128, "latest"])
def test_a_malformed_digest_is_refused_by_the_schema(digest):
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmError, match="digest"):
            chart.validate_schema(chart.merge_values({"image": {"digest": digest}}))
