"""The README and docs/ link only to files inside the repository, and every one of them exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_links_point_at_files_in_the_repository(document: Path) -> None:
    links = [target for target in LINK.findall(document.read_text()) if not target.startswith(("http", "mailto:"))]
    for target in links:
        resolved = (document.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{target} leaves the repository"
        assert resolved.exists(), f"{target} does not exist"


def test_the_readme_leads_to_the_runbook_and_the_contributor_guide() -> None:
    readme = (ROOT / "README.md").read_text()
    for doc in ("docs/ARCHITECTURE.md", "docs/OPERATIONS.md", "docs/CONTRIBUTING.md"):
        assert f"]({doc})" in readme, doc
