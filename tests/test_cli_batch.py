"""``llama batch`` from the command line: options of the reference page, errors, sweeps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import sigint_as_in_a_terminal
from llama.cli import batch
from llama.version import release_problem


def run(args, capsys) -> tuple[int, str, str]:
    code = batch.main(["-D", "-l", "/dev/null", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys):
    from llama.version import __version__

    assert run(["-V"], capsys)[:2] == (0, __version__ + "\n")


def test_help_shows_every_option_of_the_reference_page(capsys):
    with pytest.raises(SystemExit):
        batch.main(["--help"])
    out = capsys.readouterr().out
    for option in (
        "-V", "--version", "-D", "--dev-mode", "--err-alert", "-f", "--filehandlers", "+f",
        "++filehandlers", "-p", "--pipeline", "--print-default-pipeline", "--dry-run-pipeline",
        "--flags", "--flag-presets", "--dry-run-flags", "-l", "--logfile", "-v", "--verbosity",
        "--get", "--put", "--errdump", "--format", "--eventdir", "--random", "--public",
        "params", "RctSlkI3CoincSummaryI3LvcPdf", "LLAMA2_REVIEW_PIPELINE",
    ):  # fmt: skip
        assert option in out, option


def test_flag_presets_and_dry_run_flags(capsys):
    code, out, _ = run(["--flag-presets"], capsys)
    assert code == 0 and "TRIGGERED_PUBLIC: {" in out and out.count("\n") == 6
    code, out, _ = run(["--dry-run-flags", "--flags", "TRIGGERED_TEST", "ONLINE=false"], capsys)
    assert code == 0
    flags = eval(out)
    assert flags["BLINDED_NEUTRINOS"] == "true" and flags["ONLINE"] == "false"


def test_bad_flag_is_one_clear_message(capsys):
    code, _, err = run(["--dry-run-flags", "--flags", "ONLINE=yes"], capsys)
    assert code == 2 and "invalid value 'yes' for flag ONLINE; choose one of: true, false" in err
    assert "Traceback" not in err


def test_pipelines_print_and_dry_run(capsys):
    code, out, _ = run(["--print-default-pipeline"], capsys)
    assert code == 0 and len(out.split()) == 43
    code, out, _ = run(["--dry-run-pipeline", "+f", "LvcSkymapHdf5", "-f", "PAstro"], capsys)
    assert out.split() == ["SkymapInfo", "LvcSkymapFits", "LvcSkymapHdf5", "PAstro"]
    code, out, _ = run(["--dry-run-pipeline", "-p", "SUBTHRESHOLD_PIPELINE"], capsys)
    assert out.split()[-1] == "CoincSignificanceSubthresholdI3Lvc"


def test_unknown_handler_lists_choices(capsys):
    with pytest.raises(SystemExit) as exit_info:
        batch.main(["-f", "SkyMapInfo"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'SkyMapInfo'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--eventdir", "x/{graceid}"], "uses {graceid}, which is neither a params name"),
        (["--get", "../evil=/etc/passwd"], "--get ../evil"),
        (["--put", "/abs.json=out.json"], "--put /abs.json"),
        (["--get", "a.json={x.__class__}"], "plain"),
        (["g=/nonexistent/list.txt"], "/nonexistent/list.txt"),
    ],
)
def test_input_mistakes_are_one_clear_message(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(
        ["--flags", *args] if args[0].startswith("--") else [*args, "--flags"], capsys
    )
    assert code == 2, err
    assert message in err and "Traceback" not in err


def test_log_file_gets_debug_and_default_is_xdg(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert batch.default_logfile() == tmp_path / "xdg/llama/logs/llama.batch.log"
    log = tmp_path / "run.log"
    code = batch.main(["-D", "-l", str(log), "-v", "none", "-f", "SkymapInfo", "--flags",
                       "--eventdir", str(tmp_path / "ev")])  # fmt: skip
    assert code == 0
    text = log.read_text()
    assert "DEBUG" in text or "INFO" in text
    assert "1 events" in text
    assert capsys.readouterr().out == ""


def test_random_draws_are_reproducible_with_seed(tmp_path, capsys):
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(f"S{i}" for i in range(50)))
    runs = []
    for name in ("a", "b"):
        code, out, err = run([f"graceid={ids}", "--random", "5", "--seed", "1", "-f",
                              "SkymapInfo", "--flags", "--eventdir",
                              str(tmp_path / name / "{graceid}")], capsys)  # fmt: skip
        assert code == 0, err
        from llama.results import read_results

        ds = read_results(tmp_path / name / "llama_batch_results.nc")
        runs.append(list(ds.param_graceid.values))
    assert runs[0] == runs[1] and len(runs[0]) == 5


def test_release_check_refuses_local_changes(tmp_path):
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "x.py").write_text("a = 1\n")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "."], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=tmp_path, check=True)
    assert release_problem("1.0.0", tmp_path) is None
    (tmp_path / "llama" / "x.py").write_text("a = 2\n")
    assert "local changes" in release_problem("1.0.0", tmp_path)
    assert "not a release" in release_problem("1.0.0rc1", tmp_path)


# -- the sweep of the issue: 2 x 3 events, --get from local, HTTP and S3, --format, --put
def _write_map(path: Path, seed: int) -> None:
    from llama.science.sim import simulate_skymap
    from llama.science.skymap import write_sky_map

    rng = np.random.default_rng(seed)
    write_sky_map(path, simulate_skymap(rng, 30.0 * seed, 10.0, sigma_deg=5.0, max_order=6))


def test_cartesian_sweep_over_local_http_and_s3(tmp_path, http_server, s3, s3_client, capsys):
    base_url, http_root = http_server
    graceids, lists = ["S190425z", "S200115j"], ["bg0", "bg1", "inj2"]
    # params: graceids from a local file, neutrino list names from S3
    (tmp_path / "graceids.txt").write_text("\n".join(graceids) + "\n")
    s3_client.put_object(Bucket=s3, Key="params/lists.json", Body=json.dumps(lists))
    for i, g in enumerate(graceids):  # skymap_info templates over HTTP, maps on S3
        (http_root / g).mkdir()
        (http_root / g / "skymap_info.json").write_text(
            '{{"graceid": "{graceid}", "neutrinos": "{neutrinos}", "user": "{LLAMA_TEST_USER}"}}'
        )
        _write_map(tmp_path / f"{g}.fits", i + 1)
        s3_client.upload_file(str(tmp_path / f"{g}.fits"), s3, f"maps/{g}.fits")
    (tmp_path / "nu").mkdir()
    for name in lists:  # neutrino lists locally
        (tmp_path / "nu" / f"{name}.json").write_text(
            json.dumps({"triggers": [], "complete": True})
        )
    out = tmp_path / "out"
    args = [
        f"graceid={tmp_path / 'graceids.txt'}", f"neutrinos=s3://{s3}/params/lists.json",
        "+f", "LvcDistancesJson", "--flags", "ONLINE=false",
        "--get", f"skymap_info.json={base_url}/{{graceid}}/skymap_info.json",
        f"lvc_skymap.fits=s3://{s3}/maps/{{graceid}}.fits",
        f"icecube_neutrino_list.json={tmp_path}/nu/{{neutrinos}}.json",
        "--format", "skymap_info.json",
        "--put", f"lvc_skymap_distances.json={out}/{{graceid}}/{{neutrinos}}/distances.json",
        f"skymap_info.json=s3://{s3}/results/{{graceid}}-{{neutrinos}}/skymap_info.json",
        "--eventdir", str(tmp_path / "events" / "{graceid}-{neutrinos}"),
        "--results", f"s3://{s3}/results/sweep.zarr",
    ]  # fmt: skip
    import os

    os.environ["LLAMA_TEST_USER"] = "tester"
    try:
        code, stdout, err = run(args, capsys)
    finally:
        del os.environ["LLAMA_TEST_USER"]
    assert code == 0, err
    assert "6 events: 6 done" in stdout
    dirs = sorted(p.name for p in (tmp_path / "events").iterdir() if p.is_dir())
    assert dirs == sorted(f"{g}-{n}" for g in graceids for n in lists)
    for g in graceids:
        for n in lists:
            info = json.loads((tmp_path / "events" / f"{g}-{n}" / "skymap_info.json").read_text())
            assert info == {"graceid": g, "neutrinos": n, "user": "tester"}
            dist = json.loads((out / g / n / "distances.json").read_text())
            assert dist["distmean"] > 0
            body = s3_client.get_object(Bucket=s3, Key=f"results/{g}-{n}/skymap_info.json")
            assert json.loads(body["Body"].read()) == info
    # the results on S3: one cell per pairing, labelled by the params' values
    from llama.results import open_results, state_names

    ds = open_results(f"s3://{s3}/results/sweep.zarr").load()
    assert dict(ds.sizes) == {"graceid": 2, "neutrinos": 3}
    assert ds.graceid.values.tolist() == graceids and ds.neutrinos.values.tolist() == lists
    for g in graceids:
        for n in lists:
            cell = ds.sel(graceid=g, neutrinos=n)
            assert str(cell.directory.values) == str(tmp_path / "events" / f"{g}-{n}")
            assert str(cell.eventid.values) == f"{g}-{n}"
    assert (state_names(ds.state) == "done").all()
    # the same command again: everything is up to date, nothing is fetched again
    before = len(http_server.requests)
    code, stdout, _ = run(args, capsys)
    assert code == 0 and "6 up to date" in stdout
    assert len(http_server.requests) == before
    again = open_results(f"s3://{s3}/results/sweep.zarr").load()
    assert (state_names(again.state) == "up to date").all() and dict(again.sizes) == dict(ds.sizes)


# -- failures, alerts, ACLs, prompts, endless runs ---------------------------------------
def _failing_sweep(tmp_path: Path) -> list[str]:
    """Two events; the second one's sky map is not a FITS file, so LvcSkymapHdf5 fails."""
    src = tmp_path / "src"
    for g, body in (("S1", None), ("S2", b"not a sky map")):
        (src / g).mkdir(parents=True)
        (src / g / "skymap_info.json").write_text(
            json.dumps({"graceid": g, "event_time_iso": "2019-04-25T08:18:05"})
        )
        if body is None:
            _write_map(src / g / "lvc_skymap.fits", 1)
        else:
            (src / g / "lvc_skymap.fits").write_bytes(body)
    (tmp_path / "ids.txt").write_text("S1\nS2\n")
    return [
        f"graceid={tmp_path / 'ids.txt'}", "+f", "LvcSkymapHdf5", "--flags",
        "--get", f"skymap_info.json={src}/{{graceid}}/skymap_info.json",
        f"lvc_skymap.fits={src}/{{graceid}}/lvc_skymap.fits",
        "--eventdir", str(tmp_path / "events" / "{graceid}"),
    ]  # fmt: skip


def test_failed_event_is_dumped_to_local_and_s3_and_alerted(tmp_path, s3, s3_client, capsys,
                                                             monkeypatch):  # fmt: skip
    import http.server
    import threading

    received = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("LLAMA_ERR_ALERT_URL", f"http://127.0.0.1:{server.server_port}/secret-token")
    args = _failing_sweep(tmp_path)
    args += ["--errdump", str(tmp_path / "dumps" / "{graceid}"), f"s3://{s3}/dumps", "--err-alert"]
    try:
        code, stdout, err = run(args, capsys)
    finally:
        server.shutdown()
    assert code == 1, err
    assert "2 events: 1 done, 0 up to date, 0 vetoed, 1 failed" in stdout
    local = tmp_path / "dumps" / "S2" / "S2"
    assert (local / "lvc_skymap.fits").read_bytes() == b"not a sky map"
    assert "LvcSkymapHdf5" in (local / "ERRDUMP.log").read_text()
    keys = {o["Key"] for o in s3_client.list_objects_v2(Bucket=s3)["Contents"]}
    assert {"dumps/S2/ERRDUMP.log", "dumps/S2/skymap_info.json"} <= keys
    assert len(received) == 1 and "S2" in received[0]["text"]
    assert "secret-token" not in err + stdout
    assert (tmp_path / "events" / "S1" / "lvc_skymap.hdf5").exists()


def test_public_uploads_are_public_and_default_private(tmp_path, s3, s3_client, capsys):
    (tmp_path / "ids.txt").write_text("S1\n")
    (tmp_path / "info.json").write_text('{"graceid": "S1"}')
    base = [f"graceid={tmp_path / 'ids.txt'}", "-f", "SkymapInfo", "--flags",
            "--get", f"skymap_info.json={tmp_path}/info.json"]  # fmt: skip
    for public, key in ((True, "pub/S1.json"), (False, "priv/S1.json")):
        args = [*base, "--put", f"skymap_info.json=s3://{s3}/{key}"]
        code, _, err = run([*args, "--public"] if public else args, capsys)
        assert code == 0, err
        grants = s3_client.get_object_acl(Bucket=s3, Key=key)["Grants"]
        everyone = [g for g in grants if g["Grantee"].get("URI", "").endswith("/AllUsers")]
        assert bool(everyone) == public


def test_flags_are_asked_on_a_terminal(tmp_path, capsys, monkeypatch):
    import io

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdin", Tty("TRIGGERED_TEST ONLINE=false\n"))
    code = batch.main(["-D", "-l", "/dev/null", "-f", "SkymapInfo",
                       "--eventdir", str(tmp_path / "ev")])  # fmt: skip
    assert code == 0
    flags = json.loads((tmp_path / "ev" / "FLAGS.json").read_text())
    assert flags["BLINDED_NEUTRINOS"] == "true" and flags["ONLINE"] == "false"


def test_endless_random_run_stops_cleanly_on_interrupt(tmp_path):
    import signal
    import sys
    import time

    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(f"S{i}" for i in range(1000)))
    cmd = [sys.executable, "-m", "llama.cli", "batch", "-D", "-l", str(tmp_path / "log"),
           f"graceid={ids}", "--random", "-1", "--seed", "3", "-f", "SkymapInfo", "--flags",
           "--eventdir", str(tmp_path / "ev" / "{graceid}")]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_in_a_terminal)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list((tmp_path / "ev").glob("*/.batch.json"))) < 50:  # fmt: skip
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:  # an endless run must never outlive its test
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted: run the same command again to resume" in err
    assert "events:" in out
    assert "seed 3" in (tmp_path / "log").read_text()


# -- --jobs: bounded ---------------------------------------------------------------------
@pytest.mark.parametrize("jobs, message", [
    ("20000", "--jobs 20000 is more than 64 per CPU"),
    ("0", "--jobs 0: at least 1 job is needed; give --jobs 1 or more"),
])  # fmt: skip
def test_absurd_jobs_are_refused_before_any_work(jobs, message, tmp_path, capsys):
    from llama.batch.runner import max_jobs

    (tmp_path / "ids.txt").write_text("S1\n")
    args = [f"graceid={tmp_path / 'ids.txt'}", "-f", "SkymapInfo", "--flags", "--jobs", jobs,
            "--eventdir", str(tmp_path / "events" / "{graceid}")]  # fmt: skip
    code, _, err = run(args, capsys)
    assert code == 2 and message in err and "Traceback" not in err
    if jobs == "20000":  # the limit and the fix are named
        assert f"give --jobs {max_jobs()} or less" in err
    assert not (tmp_path / "events").exists()


def test_a_named_handler_left_waiting_for_an_input_is_reported(tmp_path, capsys):
    # +f makes ancestors but cannot make an input file: the run must say which handler
    # was not made and which file to --get, instead of counting the events done silently
    src = tmp_path / "src"
    src.mkdir()
    info = {"graceid": "S1", "event_time_iso": "2019-04-25T08:18:05"}
    (src / "skymap_info.json").write_text(json.dumps(info))
    (tmp_path / "ids.txt").write_text("S1\nS2\n")
    args = [
        f"graceid={tmp_path / 'ids.txt'}", "+f", "LVAlertAdvok", "SkymapInfo",
        "--eventdir", str(tmp_path / "events" / "{graceid}"),
        "--get", f"skymap_info.json={src}/skymap_info.json",
    ]  # fmt: skip
    code, out, err = run(args, capsys)
    assert code == 0, err
    assert "2 events: 2 done" in out
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: LVAlertAdvok was not made in 2 events: it waits for lvalert.json, an input "
        "file that no handler makes; give it with --get lvalert.json=URL"
    ]
    assert not (tmp_path / "events" / "S1" / "lvalert_advok.json").exists()
    # once the input is fetched, the handler runs and no note is printed
    (src / "lvalert.json").write_text(json.dumps({"graceid": "S1", "labels": ["ADVOK"]}))
    code, out, err = run([*args, f"lvalert.json={src}/lvalert.json"], capsys)
    assert code == 0, err
    assert "note:" not in err
    assert json.loads((tmp_path / "events" / "S1" / "lvalert_advok.json").read_text())["advok"]


def test_the_command_ends_with_its_status_its_log_and_files_complete(tmp_path):
    # `llama batch` as a program ends without tearing down its interpreter
    # (llama.cli.end_process): its exit status, what it printed, its log file and its
    # results file must be what a normal exit leaves, for a run with a failed event
    args = _failing_sweep(tmp_path)
    log = tmp_path / "run.log"
    command = [sys.executable, "-m", "llama.cli", "batch", *args, "-D", "-v", "warning",
               "-l", str(log), "--results", str(tmp_path / "results.nc")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    summary = "2 events: 1 done, 0 up to date, 0 vetoed, 1 failed"
    assert summary in done.stdout
    lines = log.read_text().splitlines()
    assert summary in lines[-1] or any(summary in line for line in lines[-3:]), lines[-3:]
    assert "results of 2 events" in log.read_text()
    from llama.results import read_results

    table = read_results(tmp_path / "results.nc")
    assert sorted(table.state.values.tolist()) == ["done", "failed"]
    # the same through main() called by a program of its own: no early end there
    code = "import sys; from llama.cli import main; print(main(sys.argv[1:]))"
    again = subprocess.run([sys.executable, "-c", code, *command[3:]], capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert again.stdout.strip().endswith("1"), again.stderr
