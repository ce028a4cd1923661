"""The README and docs/ send readers only to files that ship with the project, and that are there."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_links_stay_inside_the_repository(page):
    text = page.read_text()
    assert "shared/" not in text, "shared/ is not part of the project a user gets"
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+://", target):
            continue
        resolved = (page.parent / target).resolve()
        assert resolved.is_relative_to(REPO), f"{target} is outside the repository"
        assert resolved.exists(), f"{target} does not exist (a renamed or missing page?)"


def test_the_docs_are_there():
    assert {p.name for p in PAGES} >= {"README.md", "cli.md", "architecture.md", "bacalhau-users.md"}
