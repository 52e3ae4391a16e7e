"""The repository's documents: every relative link in a Markdown file resolves to a file or
folder inside the repository (and its #anchor to a heading there), no Markdown link leaves the
repository, and no committed file names a path of a developer's machine."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"(?<!\!)\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# /tmp inside the image and its manifests is the container's own scratch folder (an emptyDir);
# everywhere else these folders only exist on somebody's machine.
MACHINE_PATH = re.compile(r"(?<![\w.~$-])/(?:work|tmp|home|root|Users)/")
CONTAINER_SUFFIXES = (".yaml", ".yml", "Containerfile")


def tracked(pattern: str = "") -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z", *([pattern] if pattern else [])], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [ROOT / p for p in out.split("\0") if p and (ROOT / p).is_file()]


def anchors(md: Path) -> set[str]:
    """GitHub's heading anchors: lowercase, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in md.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"#{1,6}\s+(.*)", line):
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(slug)
    return out


def links(md: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", md.read_text(encoding="utf-8"), flags=re.S)  # not inside code blocks
    text = re.sub(r"`[^`\n]*`", "", text)
    return LINK.findall(text)


MARKDOWN = tracked("*.md")


def test_there_are_documents_to_check() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in MARKDOWN}
    assert {"README.md", "docs/design/architecture.md"} <= names


@pytest.mark.parametrize("md", MARKDOWN, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_resolves_inside_the_repository(md: Path) -> None:
    broken = []
    for target in links(md):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):
            broken.append(f"{target}: links outside the repository")
            continue
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor}")
    assert not broken, f"{md.relative_to(ROOT)}: " + "; ".join(broken)


def test_no_file_names_a_path_of_a_developers_machine() -> None:
    found = []
    for f in tracked():
        rel = f.relative_to(ROOT).as_posix()
        if rel.startswith("k8s/") and rel.endswith(CONTAINER_SUFFIXES):
            continue
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        for n, line in enumerate(text.splitlines(), 1):
            if MACHINE_PATH.search(line):
                found.append(f"{rel}:{n}: {line.strip()[:100]}")
    assert not found, "\n".join(found)


def test_the_checks_catch_what_they_look_for(tmp_path: Path) -> None:
    md = tmp_path / "x.md"
    md.write_text("[a](missing.md) [b](https://example.org) `[c](in-code.md)` [d](#here)\n# Here\n")
    assert links(md) == ["missing.md", "https://example.org", "#here"]
    assert anchors(md) == {"here"}
    root_dir = "/".join(("", "work", "main"))  # spelled out in pieces: this file is checked too
    scratch = "/".join(("", "tmp", "y"))
    assert MACHINE_PATH.search(f"see {root_dir}/README.md") and MACHINE_PATH.search(f"cp x {scratch}")
    assert not MACHINE_PATH.search("MEDSETTLE_DATA_DIR=$TMPDIR/x ./data/tmp/y ~/tmp/z")
