"""``llama batch`` against hostile or unlucky input (issue 9, items 1 and 2).

Values from params files and the environment must never lead a path or URL out of
the directory the user named, and one bad event directory must never stop a batch.
Every test runs the real command line on real files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llama.batch import sweep
from llama.batch.runner import BatchConfig, run_batch
from llama.cli import batch
from llama.pipeline import select_pipeline


def run(args, capsys) -> tuple[int, str, str]:
    code = batch.main(["-D", "-l", "/dev/null", "-v", "info", *args])
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its contents (directories as empty markers)."""
    files = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        files[rel] = path.read_bytes() if path.is_file() else b"<dir>"
    return files


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """A working directory three levels below `tmp_path`, with a source file in it.

    Hostile values climb with ``..`` towards `tmp_path`, where a secret lies that
    no run may read, and where nothing may be written.
    """
    root = tmp_path / "a" / "b" / "work"
    (root / "src").mkdir(parents=True)
    (root / "src" / "S1.json").write_text(json.dumps({"graceid": "S1"}))
    (tmp_path / "secret.json").write_text(json.dumps({"graceid": "STOLEN"}))
    monkeypatch.chdir(root)
    return root


# -- item 1: values may not lead out of their directories --------------------------------
# kind: (value, what the message says about it)
HOSTILE = {
    "climb": ("a/../../../x", "contains a path separator '/'"),
    "parent": ("..", "names the parent directory"),
    "dot": (".", "names the current directory"),
    "backslash": ("a\\..\\x", "contains a path separator '\\\\'"),
    "absolute": ("/tmp/x", "contains a path separator '/'"),
    "nul": ("a\u0000b", "contains the control character '\\x00'"),
    "newline": ("a\nb", "contains the control character '\\n'"),
    "empty": ("", "is empty"),
    "home": ("~", "starts with '~', which a local path reads as a home directory"),
}


def _params_file(root: Path, value: str) -> Path:
    # JSON, so that empty, NUL and newline values can be written at all; the bad
    # value is on line 3, which the message must name
    path = root / "ids.json"
    path.write_text("[\n" + '  "S1",\n  ' + json.dumps(value) + "\n]\n")
    return path


def _option(which: str, root: Path) -> list[str]:
    """The templated option under attack; the others have no fields, so the refusal
    can only come from the option under test."""
    get = ["--get", f"skymap_info.json={root}/src/S1.json"]
    return {
        "put": [*get, "--put", f"skymap_info.json={root}/dst/{{graceid}}"],
        "errdump": [*get, "--errdump", f"{root}/dump/{{graceid}}"],
        "get": ["--get", f"skymap_info.json={root}/src/{{graceid}}.json"],
        "eventdir": [*get, "--eventdir", f"{root}/ev/sub/{{graceid}}"],
    }[which]


@pytest.mark.parametrize("which", ["put", "errdump", "get", "eventdir"])
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_values_are_refused_before_any_event(which, kind, work, tmp_path, capsys):
    value, problem = HOSTILE[kind]
    params = _params_file(work, value)
    before = snapshot(tmp_path)
    code, out, err = run([f"graceid={params}", "-f", "SkymapInfo", "--flags",
                          *_option(which, work)], capsys)  # fmt: skip
    assert code == 2, err
    assert f"llama batch: error: graceid={params} line 3: value {value!r} {problem}" in err
    assert "Traceback" not in err and "events:" not in out
    # no event ran: not a single file appeared or changed anywhere under tmp_path
    assert snapshot(tmp_path) == before


def test_the_message_names_value_file_line_and_fix(work, capsys):
    ids = work / "ids.txt"
    ids.write_text("S1\n# a comment\na/../../x\n")
    code, _, err = run([f"graceid={ids}", "-f", "SkymapInfo", "--flags",
                        *_option("put", work)], capsys)  # fmt: skip
    assert code == 2
    assert f"graceid={ids} line 3: value 'a/../../x' contains a path separator '/'" in err
    assert "--allow-path-values" in err and f"'{work}/dst/{{graceid}}'" in err


def test_random_draws_check_every_value_up_front(work, tmp_path, capsys):
    # 1000 good values and one bad one: a single draw almost surely misses it, but the
    # lists are checked before drawing, so the run is refused all the same
    ids = work / "ids.txt"
    ids.write_text("\n".join([*(f"S{i}" for i in range(1000)), ".."]) + "\n")
    before = snapshot(tmp_path)
    code, _, err = run([f"graceid={ids}", "--random", "1", "--seed", "0", "-f", "SkymapInfo",
                        "--flags", "--eventdir", f"{work}/ev/{{graceid}}"], capsys)  # fmt: skip
    assert code == 2 and f"graceid={ids} line 1001: value '..' names the parent directory" in err
    assert snapshot(tmp_path) == before


def test_environment_fallbacks_obey_the_same_rule(work, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LLAMA_TEST_RUN", "../../..")
    before = snapshot(tmp_path)
    code, _, err = run(["-f", "SkymapInfo", "--flags", "--get",
                        f"skymap_info.json={work}/src/S1.json",
                        "--put", f"skymap_info.json={work}/dst/{{LLAMA_TEST_RUN}}/x.json"],
                       capsys)  # fmt: skip
    assert code == 2
    assert "environment variable LLAMA_TEST_RUN: value '../../..' contains a path separator" in err
    assert snapshot(tmp_path) == before


def test_format_files_take_any_value(work, capsys):
    # --format fills file contents, not paths: a value with '/' is fine there
    (work / "info.json").write_text('{{"graceid": "S1", "note": "{note}"}}')
    notes = work / "notes.txt"
    notes.write_text("see ../../docs/a.txt\n")
    code, _, err = run([f"note={notes}", "-f", "SkymapInfo", "--flags",
                        "--get", f"skymap_info.json={work}/info.json",
                        "--format", "skymap_info.json", "--eventdir", f"{work}/ev"],
                       capsys)  # fmt: skip
    assert code == 0, err
    info = json.loads((work / "ev" / "skymap_info.json").read_text())
    assert info["note"] == "see ../../docs/a.txt"


def test_allow_path_values_lets_values_name_subdirectories(work, capsys):
    (work / "src" / "deep").mkdir()
    (work / "src" / "deep" / "S9.json").write_text(json.dumps({"graceid": "S9"}))
    ids = work / "ids.txt"
    ids.write_text("deep/S9\n")
    args = [f"graceid={ids}", "-f", "SkymapInfo", "--flags",
            "--get", f"skymap_info.json={work}/src/{{graceid}}.json",
            "--put", f"skymap_info.json={work}/dst/{{graceid}}.json",
            "--eventdir", f"{work}/ev/{{graceid}}"]  # fmt: skip
    code, _, err = run(args, capsys)
    assert code == 2 and "contains a path separator" in err
    code, out, err = run([*args, "--allow-path-values"], capsys)
    assert code == 0, err
    assert "1 events: 1 done" in out
    assert json.loads((work / "dst" / "deep" / "S9.json").read_text()) == {"graceid": "S9"}
    assert (work / "ev" / "deep" / "S9" / "skymap_info.json").exists()
    # control characters stay refused even then
    ids.write_text('["deep/S\\u0000"]')
    code, _, err = run([*args, "--allow-path-values"], capsys)
    assert code == 2 and "contains the control character '\\x00'" in err


def test_params_remember_the_line_of_each_value(tmp_path):
    lines = tmp_path / "ids.txt"
    lines.write_text("# header\n\nS1\n  S2  \n")
    js = tmp_path / "ids.json"
    js.write_text('[\n  "S1", 2,\n\n  "S3"\n]')
    params = sweep.parse_params([f"g={lines}", f"h={js}"])
    assert params == {"g": ["S1", "S2"], "h": ["S1", "2", "S3"]}
    assert [params.origin("g", i) for i in range(2)] == [f"g={lines} line 3", f"g={lines} line 4"]
    assert [params.origin("h", i) for i in range(3)] == [
        f"h={js} line 2", f"h={js} line 2", f"h={js} line 4"
    ]  # fmt: skip


# -- item 2: one bad event never stops the batch -----------------------------------------
LONG = "S" + "x" * 299


def _three_events(work: Path, second: str) -> list[str]:
    (work / "ids.txt").write_text(f"S1\n{second}\nS3\n")
    # every event reads the same source: a long name could not be a source file either
    return [
        f"graceid={work / 'ids.txt'}", "-f", "SkymapInfo", "--flags", "--jobs", "1",
        "--get", f"skymap_info.json={work}/src/S1.json",
        "--eventdir", f"{work}/ev/{{graceid}}", "--errdump", f"{work}/dump",
    ]  # fmt: skip


@pytest.mark.parametrize("problem", ["file", "long name", "corrupt flags", "corrupt flags again"])
def test_one_bad_event_does_not_stop_the_batch(problem, work, capsys):
    second = LONG if problem == "long name" else "S2"
    args = _three_events(work, second)
    bad = work / "ev" / second
    if problem == "file":
        (work / "ev").mkdir()
        bad.write_text("in the way")
        reason = f"event directory {bad} is a file, not a directory: move the file away"
    elif problem == "long name":
        reason = "a name is too long for the file system (300 bytes; the usual limit is 255"
    else:
        if problem == "corrupt flags again":
            # finished once: the up-to-date pass in the driver meets the damage first
            code, out, err = run(args, capsys)
            assert code == 0 and "3 done" in out, err
        bad.mkdir(parents=True, exist_ok=True)
        (bad / "FLAGS.json").write_text('{"ONLINE": "false",')
        reason = f"{bad}/FLAGS.json is damaged ("
    code, out, err = run(args, capsys)
    assert code == 1, err
    assert "Traceback" not in err
    finished = "0 done, 2 up to date" if problem == "corrupt flags again" else "2 done, 0 up"
    assert f"3 events: {finished}" in out and "1 failed" in out
    failed = [line for line in err.splitlines() if line.startswith("ERROR: event ")]
    assert len(failed) == 1 and reason in failed[0], err
    for g in ("S1", "S3"):
        assert json.loads((work / "ev" / g / "skymap_info.json").read_text()) == {"graceid": "S1"}
    dumps = list((work / "dump").iterdir())
    assert len(dumps) == 1 and reason in (dumps[0] / "ERRDUMP.log").read_text()


def test_an_error_while_finishing_fails_only_that_event(tmp_path, monkeypatch):
    # any exception from a Dask task would stop every event: finish_event absorbs it
    from llama.batch import runner

    real = runner._collect_records

    def flaky(job, event=None):
        if job.vector["g"] == "2":
            raise OSError("disk went away")
        return real(job, event)

    monkeypatch.setattr(runner, "_collect_records", flaky)
    config = BatchConfig(
        pipeline=select_pipeline(exact=["SkymapInfo"]),
        eventdir=str(tmp_path / "ev" / "E{g}"),
        flags={},
        jobs=1,
    )
    summary = run_batch([{"g": str(i)} for i in range(1, 4)], config, progress=False)
    assert summary.counts == {"done": 2, "failed": 1}
    assert summary.outcomes[1].error == "OSError: disk went away"


def test_keyboard_interrupt_is_not_swallowed(tmp_path, monkeypatch):
    from llama.batch import runner

    def interrupted(job, event=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_collect_records", interrupted)
    config = BatchConfig(
        pipeline=select_pipeline(exact=["SkymapInfo"]),
        eventdir=str(tmp_path / "ev" / "E{g}"),
        flags={},
        jobs=1,
        scheduler="synchronous",
    )
    summary = run_batch([{"g": str(i)} for i in range(3)], config, progress=False)
    assert summary.interrupted and summary.counts["failed"] == 0
    assert not os.path.exists(tmp_path / "ev" / "E0" / ".batch.json")


def test_help_states_the_rule(capsys):
    with pytest.raises(SystemExit):
        batch.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "each {field} must receive one plain name" in out
    assert "starts with '~' or holds a control character is refused before any event runs" in out
    assert "--allow-path-values Let values inserted into --get, --put, --errdump" in out


def test_a_killed_runs_temporary_files_are_removed_by_the_next(tmp_path):
    # issue 9, item 9: they were never cleaned and were copied into error dumps
    event_dir = tmp_path / "ev" / "E1"
    event_dir.mkdir(parents=True)
    leftovers = [
        ".skymap_info.json.tmp-0123456789ab.json",  # llama.event._tmp_name
        ".lvc_skymap.fits.0123456789ab.part",  # a download cut short
    ]
    kept = [".hidden-notes.txt", "notes.tmp-0123456789ab.json", ".x.part"]
    for name in leftovers + kept:
        (event_dir / name).write_text("stale")
    config = BatchConfig(
        pipeline=select_pipeline(exact=["SkymapInfo"]),
        eventdir=str(tmp_path / "ev" / "E{g}"),
        flags={},
        jobs=1,
    )
    summary = run_batch([{"g": "1"}], config, progress=False)
    assert summary.counts == {"done": 1}
    names = set(os.listdir(event_dir))
    assert not names & set(leftovers)
    assert set(kept) <= names
    assert not [n for n in names if ".tmp-" in n and n.startswith(".")]


def test_an_html_page_served_as_params_is_refused(http_server, work, capsys):
    # issue 9, item 8: a login or error page became the sweep's values
    base_url, root = http_server
    (root / "ids.txt").write_text("<!DOCTYPE html>\n<html><body>Sign in</body></html>\n")
    code, out, err = run(["--eventdir", "ev/{graceid}", f"graceid={base_url}/ids.txt"], capsys)
    assert code == 2 and "Traceback" not in err
    assert "HTML/XML page, not a list of values" in err and "ids.txt" in err
    assert not (work / "ev").exists()


def test_params_lines_written_as_json_strings_lose_their_quotes(work, capsys):
    (work / "ids.txt").write_text('"S1"\n')
    get = "skymap_info.json=src/{graceid}.json"
    code, out, err = run(["graceid=ids.txt", "--get", get, "--eventdir", "ev/{graceid}",
                          "-f", "SkymapInfo"], capsys)  # fmt: skip
    assert code == 0, err
    assert (work / "ev" / "S1" / "skymap_info.json").exists()
    assert not [n for n in os.listdir(work / "ev") if "S1" in n and n != "S1"]


LONG_DIR = "/".join(["d" * 250] * 17)  # over PATH_MAX (4096)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["-l", "nofolder/x.log", "--eventdir", "ev/{graceid}"], None),
        (["--results", "{blocked}/r.nc", "--eventdir", "ev/{graceid}"], "--results"),
        (["--results", ".", "--eventdir", "ev/{graceid}"], "--results . is a directory"),
        (["--eventdir", f"ev/{LONG_DIR}/{{graceid}}"], "(File name too long)"),
        (["--random", "2", "--seed", str(2**64), "--eventdir", "ev/{graceid}"],
         "--seed 18446744073709551616 is out of range"),
        (["--put", "skymap_info.json=http://localhost:9/{graceid}.json", "--eventdir",
          "ev/{graceid}"], "uploads to HTTP(S) are not supported"),
    ],
)  # fmt: skip
def test_options_that_cannot_work_are_refused_before_any_event(extra, message, work, capsys):
    # issue 9, item 8: these surfaced as tracebacks, some after every event had run
    (work / "ids.txt").write_text("S1\n")
    blocked = work / "blocked"
    blocked.write_text("a file where a folder is needed")
    extra = [a.replace("{blocked}", str(blocked)) for a in extra]
    if extra[0] == "-l":
        (work / "nofolder").write_text("a file where a folder is needed")
        argv = ["-D", "-v", "info", "graceid=ids.txt", *extra, "-f", "SkymapInfo"]
        code = batch.main(argv)
        out, err = capsys.readouterr()
        message = "-l/--logfile nofolder/x.log cannot be written"
    else:
        code, out, err = run(["graceid=ids.txt", *extra, "-f", "SkymapInfo"], capsys)
    assert code == 2 and "Traceback" not in err, err
    (line,) = [x for x in err.splitlines() if x.startswith("llama batch: error:")]
    assert message in line
    assert not (work / "ev").exists()


def test_a_closed_pipe_is_not_an_error():
    # `llama batch --print-default-pipeline | head -1` printed a BrokenPipeError traceback
    import subprocess
    import sys

    code = "import sys; from llama.cli import main; sys.exit(main(sys.argv[1:]))"
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    proc = subprocess.run(
        [sys.executable, "-c", code, "batch", "--print-default-pipeline"],
        stdout=write, stderr=subprocess.PIPE, text=True, timeout=120,
    )  # fmt: skip
    os.close(write)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr


def test_a_nul_character_from_an_args_file_names_its_option(work, capsys):
    (work / "ids.txt").write_text("S1\n")
    (work / "run.args").write_text("-f\nSkymapInfo\n-l\nlog\x00.txt\n--eventdir\nev/{graceid}\n")
    code, out, err = run(["graceid=ids.txt", "@run.args"], capsys)
    assert code == 2 and "Traceback" not in err, err
    assert "option --logfile holds a NUL character" in err
