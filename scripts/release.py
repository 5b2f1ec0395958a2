#!/usr/bin/env python3
"""The release's bookkeeping, run by .github/workflows/release.yml and tested by tests/release (standard
library only: it runs on a bare runner).

  release.py check TAG              the tag (vX.Y.Z) agrees with Cargo.toml, Chart.yaml and CHANGELOG.md
  release.py versions               the same rule without a tag (CI: prints the version)
  release.py notes VERSION          CHANGELOG.md's entry for VERSION (the release notes)
  release.py chart VERSION DIGEST   sets the chart's version, appVersion and image.digest in place
  release.py krew VERSION SUMS      plugins/cloudphone.yaml filled in from a sha256sum file

The versioning rule (docs/upgrading.md): Cargo.toml's version, the chart's version and its appVersion are
one SemVer version, and it is CHANGELOG.md's newest released entry (`## [X.Y.Z] - YYYY-MM-DD`); changes
since gather under `## [Unreleased]` and the release commit moves them under the new version's heading
while bumping both files. Before the first release there is no released entry and the version is the first
release's, 0.1.0.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST_VERSION = "0.1.0"
# SemVer 2.0.0's own pattern (semver.org), without build metadata: a tag names a release.
SEMVER = r"(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)(?:-(?:(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
RELEASED_HEADING = re.compile(rf"^## \[({SEMVER})\] - (\d{{4}}-\d{{2}}-\d{{2}})\s*$", re.M)
ANY_HEADING = re.compile(r"^## ", re.M)
PLATFORMS = [("linux", "amd64"), ("linux", "arm64"), ("darwin", "amd64"), ("darwin", "arm64")]


class ReleaseError(Exception):
    pass


def crate_version(root: Path = ROOT) -> str:
    text = (root / "Cargo.toml").read_text()
    package = text.split("[package]", 1)[1].split("\n[", 1)[0]
    match = re.search(r'^version\s*=\s*"([^"]+)"', package, re.M)
    if not match:
        raise ReleaseError("Cargo.toml: no [package] version")
    return match.group(1)


def chart_field(field: str, root: Path = ROOT) -> str:
    text = (root / "charts/cloudphone-operator/Chart.yaml").read_text()
    match = re.search(rf"^{field}:\s*\"?([^\"\s]+)\"?\s*$", text, re.M)
    if not match:
        raise ReleaseError(f"Chart.yaml: no {field}")
    return match.group(1)


def newest_released(changelog: str) -> str | None:
    match = RELEASED_HEADING.search(changelog)
    return match.group(1) if match else None


def agreed_version(root: Path = ROOT) -> str:
    """The one version Cargo.toml, Chart.yaml and CHANGELOG.md agree on, or why they do not."""
    crate = crate_version(root)
    found = {
        "Cargo.toml version": crate,
        "Chart.yaml version": chart_field("version", root),
        "Chart.yaml appVersion": chart_field("appVersion", root),
    }
    changelog = (root / "CHANGELOG.md").read_text()
    released = newest_released(changelog)
    found["CHANGELOG.md's newest released entry"] = released or f"none yet (so the first, {FIRST_VERSION})"
    expected = released or FIRST_VERSION
    if not re.fullmatch(SEMVER, crate):
        raise ReleaseError(f"Cargo.toml's version {crate} is not SemVer")
    wrong = {name: value for name, value in found.items() if value != expected and not name.startswith("CHANGELOG")}
    if wrong:
        lines = "\n".join(f"  {name}: {value}" for name, value in found.items())
        raise ReleaseError(f"the versions disagree (all must be {expected}):\n{lines}")
    return expected


def check_tag(tag: str, root: Path = ROOT) -> str:
    if not re.fullmatch(rf"v{SEMVER}", tag):
        raise ReleaseError(f"tag {tag} is not v followed by a SemVer version")
    version = tag[1:]
    released = newest_released((root / "CHANGELOG.md").read_text())
    if released != version:
        raise ReleaseError(
            f"tag {tag}: CHANGELOG.md's newest released entry is {released or 'none'}; "
            f"move the Unreleased changes under '## [{version}] - <date>' first"
        )
    agreed = agreed_version(root)
    if agreed != version:
        raise ReleaseError(f"tag {tag} but the repository is at {agreed}")
    return version


def notes(version: str, root: Path = ROOT) -> str:
    changelog = (root / "CHANGELOG.md").read_text()
    for match in RELEASED_HEADING.finditer(changelog):
        if match.group(1) == version:
            rest = changelog[match.end() :]
            following = ANY_HEADING.search(rest)
            body = rest[: following.start()] if following else rest
            # Link references ([x]: url) at the end of the file belong to no entry.
            body = re.sub(r"^\[[^\]]+\]:\s+\S+\s*$", "", body, flags=re.M)
            if not body.strip():
                raise ReleaseError(f"CHANGELOG.md's entry for {version} is empty")
            return body.strip() + "\n"
    raise ReleaseError(f"CHANGELOG.md has no entry '## [{version}] - <date>'")


def set_chart(version: str, digest: str, root: Path = ROOT) -> None:
    if not re.fullmatch(SEMVER, version):
        raise ReleaseError(f"{version} is not SemVer")
    if not re.fullmatch(r"sha256:[a-f0-9]{64}", digest):
        raise ReleaseError(f"{digest!r} is not a sha256 digest")
    chart_yaml = root / "charts/cloudphone-operator/Chart.yaml"
    text = chart_yaml.read_text()
    text, versions = re.subn(r"^version:.*$", f"version: {version}", text, count=1, flags=re.M)
    text, apps = re.subn(r"^appVersion:.*$", f'appVersion: "{version}"', text, count=1, flags=re.M)
    if versions != 1 or apps != 1:
        raise ReleaseError("Chart.yaml: version or appVersion not found")
    chart_yaml.write_text(text)
    values_yaml = root / "charts/cloudphone-operator/values.yaml"
    text = values_yaml.read_text()
    # NB: the only `  digest:` line directly under `image:` (values.yaml's layout, checked by the tests).
    text, digests = re.subn(
        r"^(image:\n(?:  .*\n|\s*#.*\n)*?  digest:) \"\"$", rf'\1 "{digest}"', text, count=1, flags=re.M
    )
    if digests != 1:
        raise ReleaseError('values.yaml: no `digest: ""` under image')
    values_yaml.write_text(text)


def read_sums(path: Path) -> dict[str, str]:
    sums = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest
    return sums


def archive_name(version: str, os_: str, arch: str) -> str:
    return f"kubectl-cloudphone_v{version}_{os_}_{arch}.tar.gz"


def krew(version: str, sums_file: Path, root: Path = ROOT) -> str:
    sums = read_sums(sums_file)
    text = (root / "plugins/cloudphone.yaml").read_text()
    # The template's own comment says how to fill it; the filled manifest does not need it.
    text = re.sub(r"\A(#.*\n)+", "", text)
    text = text.replace("${VERSION}", f"v{version}")
    for os_, arch in PLATFORMS:
        name = archive_name(version, os_, arch)
        digest = sums.get(name)
        if not digest or not re.fullmatch(r"[a-f0-9]{64}", digest):
            raise ReleaseError(f"{sums_file}: no sha256 for {name}")
        if name not in text:
            raise ReleaseError(f"plugins/cloudphone.yaml does not name {name}")
        text = text.replace(f"${{SHA256_{os_}_{arch}}}", digest)
    if "${" in text:
        raise ReleaseError("plugins/cloudphone.yaml: a placeholder is left: " + re.findall(r"\$\{[^}]*\}", text)[0])
    return text


def main(argv: list[str]) -> int:
    try:
        match argv:
            case ["check", tag]:
                print(check_tag(tag))
            case ["versions"]:
                print(agreed_version())
            case ["notes", version]:
                sys.stdout.write(notes(version))
            case ["chart", version, digest]:
                set_chart(version, digest)
            case ["krew", version, sums]:
                sys.stdout.write(krew(version, Path(sums)))
            case _:
                print(__doc__, file=sys.stderr)
                return 2
    except ReleaseError as error:
        print(f"release.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
