"""``kernels.cache_stamp``: a cached kernel recompiles when any file of its package changes.

Numba stamps a ``cache=True`` function's entry with its own file only, so a caller in
one file kept serving a helper from another file as it was when the caller was compiled.
Each check runs in fresh interpreters, as the bug shows itself: a process's own compiled
code would hide what reached the on-disk cache.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"(\d+) kernel specialisations compiled, (\d+) loaded from the cache")

HELPER = """\
from numba import njit


@njit(cache=True)
def helper(x):
    return x + {value}
"""
CALLER = """\
from numba import njit

from .helper import helper


@njit(cache=True)
def caller(x):
    return 2.0 * helper(x)
"""
#: Imports the package with the stamp installed for it (``cache_stamp`` loaded by path,
#: so that the check does not depend on importing the whole ``kernels`` package), calls
#: the caller, and reports its value and whether Numba compiled it or loaded it.
RUN = """\
import importlib.util, json, sys
from pathlib import Path

sys.path.insert(0, {tmp!r})
spec = importlib.util.spec_from_file_location("cache_stamp_under_test", {module!r})
cache_stamp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cache_stamp)
installed = cache_stamp.install(Path({tmp!r}) / "tinypkg") if {install} else False

from tinypkg.caller import caller

value = caller(1.0)
print(json.dumps({{
    "value": value,
    "installed": installed,
    "compiled": sum(caller.stats.cache_misses.values()),
    "loaded": sum(caller.stats.cache_hits.values()),
}}))
"""


def make_package(tmp: Path, value: str) -> None:
    """``tmp/tinypkg``: ``caller`` in one file calls ``helper`` from another."""
    pkg = tmp / "tinypkg"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "caller.py").write_text(CALLER)
    set_helper(tmp, value)


def set_helper(tmp: Path, value: str) -> None:
    """Rewrite the helper to add ``value``; its modification time moves on by a second
    (as an editor's save would, even on a file system with coarse times)."""
    path = tmp / "tinypkg" / "helper.py"
    old = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(HELPER.format(value=value))
    mtime = max(path.stat().st_mtime_ns, old + 1_000_000_000)
    os.utime(path, ns=(mtime, mtime))


def run(tmp: Path, env: dict, install: bool = True) -> dict:
    """Call ``tinypkg.caller.caller(1.0)`` in a fresh interpreter."""
    code = RUN.format(
        tmp=str(tmp), module=str(ROOT / "kernels" / "cache_stamp.py"), install=install
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def environment(tmp: Path, cache_dir: bool) -> dict:
    """Numba's cache in ``tmp/cache`` (``NUMBA_CACHE_DIR``) or beside the sources."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE")}
    if cache_dir:
        env["NUMBA_CACHE_DIR"] = str(tmp / "cache")
    return env


@pytest.mark.parametrize("cache_dir", [False, True], ids=["pycache", "NUMBA_CACHE_DIR"])
def test_an_edited_helper_reaches_its_caller_in_another_file(tmp_path, cache_dir):
    env = environment(tmp_path, cache_dir)
    make_package(tmp_path, "1.0")
    first = run(tmp_path, env)
    assert first["installed"] and first["value"] == 4.0 and first["compiled"] == 1
    again = run(tmp_path, env)  # nothing changed: loaded, not compiled
    assert again["value"] == 4.0 and (again["compiled"], again["loaded"]) == (0, 1)

    set_helper(tmp_path, "10.0")
    edited = run(tmp_path, env)
    assert edited["value"] == 22.0 and edited["compiled"] == 1

    # the cache stays where Numba puts it, under Numba's file names
    where = tmp_path / "cache" if cache_dir else tmp_path / "tinypkg" / "__pycache__"
    assert any(where.rglob("caller.caller-*.nbi")), sorted(map(str, tmp_path.rglob("*.nbi")))


def test_touching_a_file_without_changing_it_keeps_the_cache(tmp_path):
    """The stamp is of contents: a checkout or a copy of the same sources loads."""
    env = environment(tmp_path, cache_dir=True)
    make_package(tmp_path, "1.0")
    assert run(tmp_path, env)["compiled"] == 1
    set_helper(tmp_path, "1.0")  # same text, a later time
    (tmp_path / "tinypkg" / "notes.txt").write_text("not a source")
    again = run(tmp_path, env)
    assert again["value"] == 4.0 and (again["compiled"], again["loaded"]) == (0, 1)


def test_digest_covers_every_source_and_nothing_else(tmp_path):
    from kernels.cache_stamp import package_digest

    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("a = 1\n")
    (tmp_path / "sub" / "b.py").write_text("b = 1\n")
    base = package_digest(tmp_path)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "c.py").write_text("compiled output")
    (tmp_path / "data.txt").write_text("x")
    assert package_digest(tmp_path) == base
    (tmp_path / "sub" / "b.py").write_text("b = 2\n")
    assert package_digest(tmp_path) != base
    (tmp_path / "sub" / "b.py").write_text("b = 1\n")
    assert package_digest(tmp_path) == base
    # the same bytes split differently between names is another tree
    (tmp_path / "a.py").write_text("a = 1\nb = 1\n")
    (tmp_path / "sub" / "b.py").write_text("")
    assert package_digest(tmp_path) != base


def test_a_locator_override_leaves_numba_as_it_is(tmp_path):
    """``NUMBA_CACHE_LOCATOR_CLASSES`` chooses Numba's locators: no package stamp,
    the caller still caches (per file), and importing says nothing."""
    env = environment(tmp_path, cache_dir=False)
    env["NUMBA_CACHE_LOCATOR_CLASSES"] = "InTreeCacheLocator"
    make_package(tmp_path, "1.0")
    first = run(tmp_path, env)
    assert not first["installed"] and first["value"] == 4.0
    assert run(tmp_path, env)["loaded"] == 1


def test_kernels_load_from_the_cache_in_a_second_process(tmp_path):
    """``llama warm`` twice on an empty ``NUMBA_CACHE_DIR``: the second process
    compiles nothing, and the entries carry the stamp of the whole package."""
    from kernels.cache_stamp import package_digest

    env = dict(environment(tmp_path, cache_dir=True))
    cli = [sys.executable, "-m", "llama.cli", "warm", "--only", "flat", "--jobs", "1"]
    counts = []
    for _ in range(2):
        out = subprocess.run(cli, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        found = SUMMARY.search(out.stdout)
        assert found, out.stdout
        counts.append((int(found[1]), int(found[2])))
    # (helpers called only from compiled code count with their callers when compiled)
    assert counts[0][0] > 0 and counts[1][0] == 0 and counts[1][1] > 0, counts

    digest = package_digest(ROOT / "kernels")
    index = list((tmp_path / "cache").rglob("*.nbi"))
    assert index
    for path in index:
        with open(path, "rb") as f:
            pickle.load(f)  # Numba's version
            stamp, _ = pickle.loads(f.read())
        assert stamp == ("package sources sha256", digest), path
