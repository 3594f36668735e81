"""The docs: the site builds with `mkdocs build --strict` (a broken link, a missing anchor or a page left out of
the navigation fails it), and README's links point at files that exist."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.heavy  # real models or processes: the full suite only

ROOT = Path(__file__).resolve().parent.parent


def build(root: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml"),
                           "-d", str(out)], capture_output=True, text=True, timeout=120, cwd=root,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_the_site_builds_strictly(tmp_path):
    done = build(ROOT, tmp_path / "site")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "fine-tune" / "index.html").is_file()
    architecture = (tmp_path / "site" / "architecture" / "index.html").read_text()
    assert "The layer rule" in architecture  # the root ARCHITECTURE.md is shown in the site, not copied


@pytest.mark.parametrize("damage", ["broken link", "page outside the navigation"])
def test_the_strict_build_fails_on_damage(tmp_path, damage):
    copy = tmp_path / "repo"
    copy.mkdir()
    for name in ("mkdocs.yml", "ARCHITECTURE.md", "BENCHMARKS.md"):
        shutil.copy(ROOT / name, copy / name)
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copytree(ROOT / "examples" / "apps", copy / "examples" / "apps")  # the app examples the docs include
    if damage == "broken link":
        with open(copy / "docs" / "serve.md", "a") as page:
            page.write("\nSee [nowhere](no-such-page.md).\n")
    else:
        (copy / "docs" / "orphan.md").write_text("# Orphan\n")
    done = build(copy, tmp_path / "site")
    assert done.returncode != 0
    assert ("no-such-page.md" if damage == "broken link" else "orphan.md") in done.stderr


def test_readme_links_point_at_files():
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
    assert links, "README links to the docs"
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing
    assert text.startswith("# gemfuse\n\n```bash\nmake demo") and len(text.encode()) < 12_000
