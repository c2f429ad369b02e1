"""``llama batch`` from the command line: options of the reference page, errors, sweeps."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

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
    # the same command again: everything is up to date, nothing is fetched again
    before = len(http_server.requests)
    code, stdout, _ = run(args, capsys)
    assert code == 0 and "6 up to date" in stdout
    assert len(http_server.requests) == before
