"""bench/revisions.py: another revision's files and modules, loaded beside this tree's.

A small repository of two commits is built in a temporary directory: the first
commit's modules must load with the first commit's values while the working tree holds
the second's (and uncommitted edits), each under the name asked for, relative imports
staying inside the loaded package. Then one revision of this repository is unpacked and
a module of it loaded and run against the working tree's.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import revisions  # noqa: E402


def git(repo: Path, *args: str) -> str:
    cmd = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def write(repo: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """(repository, first commit): ``pkg`` with VALUE 1 at the first commit, 2 at the
    second; trees kept under the test's own directory."""
    monkeypatch.setattr(revisions, "KEPT", tmp_path / "kept")
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    write(repo, {
        "pkg/__init__.py": "",
        "pkg/core.py": "VALUE = 1\n",
        "pkg/util.py": "from .core import VALUE\n\nTWICE = 2 * VALUE\n",
        "mod.py": "from pkg.core import VALUE\n\nX = VALUE\n",
        ".gitignore": "*.log\n",
    })  # fmt: skip
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "one")
    first = git(repo, "rev-parse", "HEAD")
    write(repo, {"pkg/core.py": "VALUE = 2\n"})
    git(repo, "commit", "-q", "-am", "two")
    yield repo, first
    for name in [m for m in sys.modules if m.split(".")[0].startswith(("pkg_", "mod_"))]:
        del sys.modules[name]


def test_a_tree_holds_the_revision_files_and_is_kept(repo):
    repo, first = repo
    tree = revisions.tree_at(first, repo=repo)
    assert (tree / "pkg" / "core.py").read_text() == "VALUE = 1\n"
    assert (tree / "mod.py").is_file()
    (tree / "pkg" / "__pycache__").mkdir()  # as Numba's cache would be
    again = revisions.tree_at("HEAD~1", repo=repo)
    assert again == tree and (again / "pkg" / "__pycache__").is_dir()  # not unpacked anew
    part = revisions.tree_at(first, ["pkg/core.py"], repo=repo)
    assert part != tree and sorted(p.name for p in part.rglob("*") if p.is_file()) == ["core.py"]
    assert revisions.tree_at("HEAD", repo=repo).joinpath("pkg/core.py").read_text() == "VALUE = 2\n"
    assert not list(revisions.KEPT.glob(".*"))  # no half-written trees left


def test_a_directory_is_its_own_tree(repo, tmp_path):
    repo, _ = repo
    assert revisions.tree_at(str(tmp_path), repo=repo) == tmp_path.resolve()


def test_package_and_module_of_an_older_revision_load_beside_the_working_tree(repo):
    repo, first = repo
    then = revisions.package_at(first, "pkg", "pkg_then", repo=repo)
    assert importlib.import_module("pkg_then.core").VALUE == 1
    util = importlib.import_module("pkg_then.util")  # relative import: the same revision's
    assert util.TWICE == 2 and Path(then.__path__[0]).name == "pkg"
    mod = revisions.module_at(
        first, "mod.py", "mod_then", replace={"from pkg.core": "from pkg_then.core"}, repo=repo
    )
    assert mod.X == 1 and sys.modules["mod_then"] is mod
    now = revisions.package_at("HEAD", "pkg", "pkg_head", repo=repo)
    assert importlib.import_module(f"{now.__name__}.core").VALUE == 2
    assert importlib.import_module("pkg_then.core").VALUE == 1  # both at once


def test_a_package_loaded_under_two_names_has_a_folder_for_each(repo):
    """Numba's cache entries name the module they were compiled in: the same revision
    loaded as ``kernels_HEAD`` by one bench and ``kernels_base`` by another must not
    share a ``__pycache__``."""
    repo, first = repo
    one = revisions.package_at(first, "pkg", "pkg_one", repo=repo)
    (Path(one.__path__[0]) / "__pycache__").mkdir(exist_ok=True)  # as Numba's cache
    (Path(one.__path__[0]) / "__pycache__" / "entry.nbi").write_text("pkg_one")
    two = revisions.package_at(first, "pkg", "pkg_two", repo=repo)
    assert one.__path__ != two.__path__
    assert not (Path(two.__path__[0]) / "__pycache__" / "entry.nbi").exists()
    assert importlib.import_module("pkg_two.core").VALUE == 1
    again = revisions.package_at(first, "pkg", "pkg_one", repo=repo)
    assert again.__path__ == one.__path__  # kept for the next run, with its cache


def test_a_dotted_name_puts_an_older_module_inside_a_loaded_package(repo):
    """As bench_overlap loads old kernels as ``kernels.overlap_baseline``: the older
    module's relative imports reach the package it is put in (here, HEAD's)."""
    repo, first = repo
    revisions.package_at("HEAD", "pkg", "pkg_head", repo=repo)
    util = revisions.module_at(first, "pkg/util.py", "pkg_head.util_then", repo=repo)
    assert util.TWICE == 4  # 2 x HEAD's VALUE, through "from .core import VALUE"
    assert sys.modules["pkg_head.util_then"] is util


def test_the_working_tree_copy_follows_uncommitted_files(repo):
    repo, _ = repo
    write(repo, {"pkg/core.py": "VALUE = 3\n", "pkg/new.py": "N = 4\n", "pkg/x.log": "ignored"})
    revisions.package_at(None, "pkg", "pkg_now", repo=repo)
    assert importlib.import_module("pkg_now.core").VALUE == 3
    assert importlib.import_module("pkg_now.new").N == 4
    copy = revisions.tree_at(None, ["pkg"], repo=repo)
    assert not (copy / "pkg" / "x.log").exists()
    write(repo, {"pkg/core.py": "VALUE = 5\n"})
    assert revisions.tree_at(None, ["pkg"], repo=repo) != copy  # another content, another copy


def test_what_git_cannot_give_is_a_revision_error(repo):
    repo, first = repo
    with pytest.raises(revisions.RevisionError):
        revisions.commit_of("no-such-branch", repo=repo)
    assert revisions.source_at(first, "pkg/none.py", repo=repo) is None
    assert revisions.source_at(first, "mod.py", repo=repo).startswith("from pkg.core")
    with pytest.raises(revisions.RevisionError):
        revisions.module_at(first, "pkg/none.py", "mod_none", repo=repo)
    with pytest.raises(revisions.RevisionError):
        revisions.tree_at(first, ["nowhere"], repo=repo)
    assert "mod_none" not in sys.modules
    assert revisions.module_name("plotting_", "HEAD~5^2") == "plotting_HEAD_5_2"
    assert revisions.warm_cache(revisions.tree_at(first, repo=repo)) is False  # no llama warm


def test_a_revision_of_this_repository_runs_as_the_working_tree_does(tmp_path, monkeypatch):
    """llama/science/times.py of HEAD, unpacked and loaded under another name beside the
    working tree's: it converts GPS times to ISO text as the working tree's module does
    (the same code, unless times.py has uncommitted edits)."""
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode:  # fmt: skip
        pytest.skip("not a git checkout")
    monkeypatch.setattr(revisions, "KEPT", tmp_path / "kept")
    tree = revisions.tree_at("HEAD", ["llama/science/times.py"], repo=ROOT)
    head = revisions.load_module("times_head", tree / "llama" / "science" / "times.py")
    try:
        from llama.science import times

        assert head is not times and head.__file__.startswith(str(tmp_path))
        for gps in (1187008882.4, 1238166018.0, 1.4e9):
            assert head.gps_to_iso(gps) == times.gps_to_iso(gps)
        env = revisions.environment(tree, NUMBA_NUM_THREADS="1")
        assert env["PYTHONPATH"] == str(tree) and env["NUMBA_NUM_THREADS"] == "1"
    finally:
        del sys.modules["times_head"]
