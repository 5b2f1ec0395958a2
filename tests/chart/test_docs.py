"""The documentation's shape: a README front door under 8 KB whose index reaches every page of the
manual, and no relative link (file or anchor) in the docs that leads nowhere."""

from __future__ import annotations

import re
from pathlib import Path

from render import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def pages() -> list[Path]:
    return [
        README,
        ROOT / "ARCHITECTURE.md",
        ROOT / "BENCHMARKS.md",
        ROOT / "CHANGELOG.md",
        *ROOT.glob("charts/*/README.md"),
        *sorted(DOCS.rglob("*.md")),
    ]


def unfenced(text: str) -> str:
    """The text outside fenced code blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def prose(text: str) -> str:
    """The text outside code (fenced blocks and `spans`)."""
    return re.sub(r"`[^`\n]*`", "", unfenced(text))


def anchors(page: Path) -> set[str]:
    """GitHub's ids of a page's headings."""
    ids = set()
    for heading in re.findall(r"^#+ (.+)$", unfenced(page.read_text()), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        ids.add(slug)
    return ids


def test_the_readme_is_a_front_door_under_8_kb():
    text = README.read_text()
    assert len(text.encode()) < 8 * 1024, f"README.md is {len(text.encode())} bytes"
    # tests/it/demo.rs proves this command works; it must stay the README's first.
    assert "cargo run -- demo" in text


def test_the_readme_index_reaches_every_page():
    linked = {(ROOT / target.split("#")[0]).resolve() for target in LINK.findall(README.read_text())}
    wanted = [p for p in pages() if p != README] + sorted(DOCS.glob("*.json"))
    missing = [str(p.relative_to(ROOT)) for p in wanted if p.resolve() not in linked]
    # The dashboard and the Lua scripts are reached through their pages (metrics, Argo CD).
    missing = [m for m in missing if not m.endswith(".json")]
    assert not missing, f"pages the README's index does not link: {missing}"


def test_every_relative_link_leads_somewhere():
    broken = []
    for page in pages():
        for target in LINK.findall(prose(page.read_text())):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
