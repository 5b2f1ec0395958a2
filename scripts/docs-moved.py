#!/usr/bin/env python3
"""Checks that a README's text moved, not vanished: every table row, fenced code block, paragraph and
list item of an older README (a file, or `git show REV:README.md`) appears verbatim in the current
documentation (README.md, docs/, ARCHITECTURE.md, BENCHMARKS.md, CHANGELOG.md, CONTRIBUTING.md, the
chart's README.md). Whitespace and link targets are ignored (a moved page links differently); a
paragraph may also be found sentence by sentence. Prints what is missing; exits 1 if anything is.

    scripts/docs-moved.py 5790cf3          # the README before the docs/ tree
    scripts/docs-moved.py /tmp/README.md
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def old_readme(arg: str) -> str:
    path = Path(arg)
    if path.is_file():
        return path.read_text()
    return subprocess.run(
        ["git", "show", f"{arg}:README.md"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout


# Words the move had to change (what "below" or "above" pointed at is now on another page), old -> new.
EDITS = {
    "| `demo` | the quick start (above) |": "| `demo` | the quick start (see the simulator) |",
    "the Secret of the vendor credentials (see below)": "the Secret of the vendor credentials (see credentials)",
    "cluster-wide (see RBAC below)": "cluster-wide (see RBAC)",
    "| `docs/` | Argo CD: an Application and the health check |": "| `docs/` | the manual:",
    "measures the real `run` wiring against a canned API server (figures in\n[BENCHMARKS.md](BENCHMARKS.md)):":
        "measures the real `run` wiring against a canned API server: memory and CPU",
}


def norm(text: str) -> str:
    text = re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", text)  # link targets change when text moves to another page
    return re.sub(r"\s+", " ", text).strip()


def pieces(text: str) -> list[tuple[str, str]]:
    """(kind, text) of every code block, table row, paragraph and list item."""
    out, block, fence = [], [], None

    def flush():
        if block:
            joined = "\n".join(block)
            if not joined.lstrip().startswith("#"):
                out.append(("paragraph", joined))
            block.clear()

    for line in text.split("\n"):
        if fence is not None:
            fence.append(line)
            if line.startswith("```"):
                out.append(("code", "\n".join(fence)))
                fence = None
            continue
        if line.startswith("```"):
            flush()
            fence = [line]
        elif line.startswith("|"):
            flush()
            if not re.fullmatch(r"\|[ :|-]+\|", line):
                out.append(("row", line))
        elif not line.strip():
            flush()
        elif re.match(r"(- |\d+\. )", line):
            flush()
            block.append(line)
        else:
            block.append(line)
    flush()
    return out


def corpus() -> str:
    files = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "BENCHMARKS.md", ROOT / "CHANGELOG.md",
             ROOT / "CONTRIBUTING.md", *ROOT.glob("charts/*/README.md"), *sorted((ROOT / "docs").rglob("*.md"))]
    return "\n".join(norm(f.read_text()) for f in files if f.is_file())


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    docs = corpus()
    missing = 0
    old = old_readme(sys.argv[1])
    for before, after in EDITS.items():
        old = old.replace(before, after)
    for kind, text in pieces(old):
        if norm(text) in docs:
            continue
        if kind == "paragraph":
            sentences = [s for s in re.split(r"(?<=[.:;])\s+", norm(text)) if s]
            lost = [s for s in sentences if s not in docs]
            if not lost:
                continue
            text = "\n  ".join(lost)
        missing += 1
        print(f"MISSING {kind}:\n  {text}\n")
    print(f"{missing} piece(s) missing", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
