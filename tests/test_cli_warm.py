"""``llama warm``: the kernels compiled into Numba's cache at install time, so that a
later run loads them instead of compiling them (issue 8, item 5).

Each check runs the real command in fresh interpreters: a process's own compiled
code would hide whether anything reached the cache on disk. Numba reports every
compiled specialisation it writes to the cache ("data saved") and every one it reads
back ("data loaded") when ``NUMBA_DEBUG_CACHE=1``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import sigint_as_in_a_terminal

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "llama" / "examples"
SUMMARY = re.compile(r"(\d+) kernel specialisations compiled, (\d+) loaded from the cache")


def llama(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``llama ARGS`` in a fresh interpreter; fails the test on a non-zero exit."""
    out = subprocess.run(
        [sys.executable, "-m", "llama.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def summary(out: subprocess.CompletedProcess) -> tuple[int, int]:
    """(compiled, loaded) from ``llama warm``'s last line."""
    found = SUMMARY.search(out.stdout)
    assert found, out.stdout
    return int(found[1]), int(found[2])


def test_help_is_instant_and_imports_nothing_heavy():
    out = llama("warm", "--help", timeout=60)
    assert "usage: llama warm" in out.stdout and "NUMBA_CACHE_DIR" in out.stdout
    code = (
        "import sys, llama.cli.warm as w; w.parser(); "
        "print(sorted({'numpy', 'numba', 'llama.science.odds'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert "warm" in llama("--help", timeout=60).stdout  # listed among the commands


def test_bad_jobs_are_refused_with_the_fix(capsys):
    from llama.cli.warm import main

    assert main(["--jobs", "0"]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--only", "nonsense"])
    assert "invalid choice: 'nonsense'" in capsys.readouterr().err


def test_warm_fills_a_fresh_cache_that_a_second_process_loads(tmp_path):
    """Two jobs on two worker processes compile into an empty ``NUMBA_CACHE_DIR``;
    the same jobs in a new process then load every kernel and compile none."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    first = llama("warm", "--only", "statistic", "flat", "--jobs", "2", env=env)
    compiled, _ = summary(first)
    assert compiled > 10, first.stdout
    assert "2/2" in first.stdout  # a line per finished job when not on a terminal
    index = list((tmp_path / "cache").rglob("*.nbi"))
    data = list((tmp_path / "cache").rglob("*.nbc"))
    assert len(index) > 10 and len(data) >= len(index)

    second = llama("warm", "--only", "statistic", "flat", env=dict(env, NUMBA_DEBUG_CACHE="1"))
    assert summary(second) == (0, summary(second)[1]) and summary(second)[1] > 0
    assert "data saved" not in second.stdout
    assert "data loaded" in second.stdout


def test_after_warm_a_batch_event_compiles_nothing(tmp_path):
    """After ``llama warm`` a real ``llama batch`` event with its significance (trials
    of either kind) loads every kernel from the cache: Numba saves nothing. Scrambles
    run at the default 2,000 trials, where RA tables pay for some neutrinos
    (kernels/ra_lookup.py; at 200 trials every neutrino gets the exact kernel instead).

    Uses Numba's own cache (``kernels/__pycache__``, which ``.ci/run`` warms before the
    tests; the first run after a kernel changed compiles it here).
    """
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    llama("warm", env=env)
    (tmp_path / "g.txt").write_text("S190425a\n")
    (tmp_path / "n.txt").write_text("bg-00\n")
    for kind, n_trials in (("background", "200"), ("scramble", "2000")):
        run_env = dict(env, NUMBA_DEBUG_CACHE="1", LLAMA_TRIAL_KIND=kind, LLAMA_N_TRIALS=n_trials)
        out = llama(
            "batch", "-D", "-l", str(tmp_path / "log"),
            f"graceid={tmp_path / 'g.txt'}", f"neutrinos={tmp_path / 'n.txt'}",
            "+f", "CoincSignificanceI3Lvc", "--flags", "ONLINE=false",
            "--get", f"skymap_info.json={EXAMPLES}/events/{{graceid}}/skymap_info.json",
            f"lvc_skymap.fits={EXAMPLES}/events/{{graceid}}/lvc_skymap.fits",
            f"icecube_neutrino_list.json={EXAMPLES}/neutrinos/{{neutrinos}}.json",
            "--eventdir", str(tmp_path / kind / "{graceid}-{neutrinos}"),
            env=run_env,
        )  # fmt: skip
        log = out.stdout + out.stderr
        assert "1 done" in log, log
        assert (tmp_path / kind / "S190425a-bg-00" / "significance_lvc-i3.json").is_file()
        saved = [line for line in log.splitlines() if "data saved" in line]
        assert saved == [], f"{kind}: compiled after llama warm: {saved}"
        assert "data loaded" in log


def test_ctrl_c_stops_the_workers_at_once(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) stops the
    driver and its compiling workers within seconds, with one line saying how to
    finish, no traceback, and no worker left behind."""
    import signal
    import time

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama.cli", "warm", "--only", "statistic", "flat"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=sigint_as_in_a_terminal,
    )  # fmt: skip
    assert "compiling the Numba kernels" in proc.stdout.readline()
    time.sleep(3.0)  # the workers are importing or compiling
    os.killpg(proc.pid, signal.SIGINT)
    t = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - t < 20
    assert proc.returncode == 130, out + err
    assert "interrupted" in err and "run 'llama warm' again" in err
    assert "Traceback" not in err
    with pytest.raises(ProcessLookupError):  # nothing of the group is left
        for _ in range(50):
            os.killpg(proc.pid, 0)
            time.sleep(0.1)


def test_warm_compiles_the_bytecode_that_later_processes_read(tmp_path):
    """``llama warm`` leaves a current ``.pyc`` for every module of ``llama`` and
    ``kernels``, and a later process with ``PYTHONDONTWRITEBYTECODE=1`` (as on the
    bench machine) loads the modules it imports from them, not from source."""
    import importlib.util

    out = llama("warm", "--only", "flat", env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    assert "Python bytecode of llama, kernels compiled" in out.stdout, out.stdout
    for package in ("llama", "kernels"):
        for source in (ROOT / package).rglob("*.py"):
            cached = Path(importlib.util.cache_from_source(str(source)))
            assert cached.is_file(), f"no .pyc for {source}"
            head = cached.read_bytes()[:16]  # magic, flags, source mtime, source size
            flags = int.from_bytes(head[4:8], "little")
            if flags == 0:  # timestamp-checked: what the loader compares
                st = source.stat()
                assert int.from_bytes(head[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
                assert int.from_bytes(head[12:16], "little") == st.st_size & 0xFFFFFFFF
    # python -v names the file each module's code object came from
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    code = "import llama.cli.warm, llama.batch.runner, kernels.overlap"
    verbose = subprocess.run(
        [sys.executable, "-v", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    ).stderr
    ours = [
        line for line in verbose.splitlines()
        if line.startswith("# code object from") and str(ROOT) in line
    ]  # fmt: skip
    assert len(ours) > 10, verbose[-2000:]
    from_source = [line for line in ours if not line.rstrip("'").endswith(".pyc")]
    assert from_source == [], from_source


def test_bytecode_of_a_package_is_used_and_a_read_only_one_skipped(tmp_path):
    """compile_bytecode on a package of its own: Python then runs the ``.pyc`` (a source
    changed behind its back, same size and mtime, still gives the compiled value), and
    a package it cannot write to is reported, not an error."""
    from llama.cli.warm import compile_bytecode

    pkg = tmp_path / "tinypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("VALUE = 1\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path), PYTHONDONTWRITEBYTECODE="1")
    code = "import sys; sys.path.insert(0, sys.argv[1]); from llama.cli.warm import " \
        "compile_bytecode; print(compile_bytecode(['tinypkg']))"  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, env=env,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert str(pkg) in done.stdout
    st = (pkg / "__init__.py").stat()
    (pkg / "__init__.py").write_text("VALUE = 2\n")  # same size
    os.utime(pkg / "__init__.py", ns=(st.st_atime_ns, st.st_mtime_ns))
    value = subprocess.run(
        [sys.executable, "-c", "import tinypkg; print(tinypkg.VALUE)"], cwd=tmp_path,
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert value.stdout.strip() == "1"  # the .pyc's code, not the source's

    assert compile_bytecode(["no_such_package_here"]) == ([], ["no_such_package_here"])
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        (ro / "ropkg").mkdir(parents=True)
        (ro / "ropkg" / "__init__.py").write_text("")
        (ro / "ropkg").chmod(0o555)
        sys.path.insert(0, str(ro))
        try:
            assert compile_bytecode(["ropkg"]) == ([], [str(ro / "ropkg")])
        finally:
            sys.path.remove(str(ro))
            (ro / "ropkg").chmod(0o755)
