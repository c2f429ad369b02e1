"""No credential out of ``llama batch`` (issue 9, items 3 and 4).

Templates never copy a credential from the environment into a file, and tokens in
URLs never reach the console, the log, ``.failed.json``, error dumps or results.
The command runs for real against real local HTTP servers; one of them echoes the
request it got, token included, in its error answers, as real services do.
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from llama import services, storage
from llama.cli import batch

pytest_plugins = ("fake_services",)  # the fake_services fixture

TOKEN = "T0KEN-4f9a1c77e2"
PASSWORD = "hunter2-pw-xyz"


def run(args, capsys) -> tuple[int, str, str]:
    code = batch.main(["-D", "-v", "debug", *args])
    out, err = capsys.readouterr()
    return code, out, err


def all_bytes(root: Path) -> bytes:
    """The contents of every file under `root`, one after another."""
    return b"\n".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


@pytest.fixture
def clean_env(monkeypatch, tmp_path) -> Path:
    """No proxy, no user config file, no service URL from the environment of the run."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    config_home = tmp_path / "config-home"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    for var in ("LLAMA_GRACEDB_URL", "LLAMA_SLACK_LMA_WEBHOOK", "LLAMA_ERR_ALERT_URL"):
        monkeypatch.delenv(var, raising=False)
    return config_home


@pytest.fixture
def echo_server() -> Iterator[str]:
    """A real HTTP server that answers every GET with 400 and the request line echoed."""

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            body = json.dumps({"detail": f"bad request {self.path}"}).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _skymap_info_sweep(tmp_path: Path, body: str) -> list[str]:
    """One event S1 whose skymap_info.json is `body`, a --format template."""
    (tmp_path / "ids.txt").write_text("S1\n")
    (tmp_path / "info.json").write_text(body)
    return [
        f"graceid={tmp_path / 'ids.txt'}",
        "--get", f"skymap_info.json={tmp_path / 'info.json'}",
        "--format", "skymap_info.json",
        "--eventdir", str(tmp_path / "events" / "{graceid}"),
        "--errdump", str(tmp_path / "dumps"),
    ]  # fmt: skip


# -- item 4: tokens in URLs ---------------------------------------------------------------
def test_token_of_a_service_url_appears_nowhere(tmp_path, clean_env, echo_server, monkeypatch,
                                                capsys):  # fmt: skip
    """GraceDB echoes the request, token included: no file, log or message shows it."""
    monkeypatch.setenv(
        "LLAMA_GRACEDB_URL", f"http://ann:{PASSWORD}@{echo_server}/api/?token={TOKEN}"
    )
    info = '{{"graceid": "{graceid}", "event_time_iso": "2019-04-25T08:18:05"}}'
    args = _skymap_info_sweep(tmp_path, info)
    args += ["-l", str(tmp_path / "batch.log"), "-f", "SkymapInfo", "LVCGraceDbEventData",
             "--flags", "ONLINE=true"]  # fmt: skip
    code, out, err = run(args, capsys)
    assert code == 1, err
    # the failure is still explained: which request, what the server said
    assert "GET http://" in err and "/api/superevents/S1/: HTTP 400" in err
    assert "token=***" in err
    leaked = [TOKEN, PASSWORD]
    for text in (out, err, (tmp_path / "batch.log").read_text()):
        assert not any(s in text for s in leaked), text
    failed = tmp_path / "events" / "S1" / ".lvc_gracedb_event_data.json.failed.json"
    assert "token=***" in json.loads(failed.read_text())["traceback"]
    dump_log = (tmp_path / "dumps" / "S1" / "ERRDUMP.log").read_text()
    assert "HTTP 400" in dump_log
    # the event, its .failed.json, the dump and the results file: nothing anywhere
    assert not any(s.encode() in all_bytes(tmp_path) for s in leaked)


def test_service_paths_go_before_the_query_string(fake_services, monkeypatch):
    """A base URL with ?token= keeps it as a query parameter, after the joined path."""
    fake_services.superevents["S1"] = {"superevent_id": "S1"}
    base = fake_services.urls["LLAMA_GRACEDB_URL"] + f"?token={TOKEN}"
    url = services.join_url(base, "superevents", "S1", "")
    assert services.get_json(url, params={"n": "1"}) == {"superevent_id": "S1"}
    assert fake_services.requests == [("GET", f"/gracedb/api/superevents/S1/?token={TOKEN}&n=1")]


@pytest.mark.parametrize(
    "text, secret, kept",
    [
        ("POST https://hooks.slack.com/services/T00/B00/XXXXsecretXXXX: 500",
         "XXXXsecretXXXX", "hooks.slack.com/services/***"),
        ("no scheme: hooks.slack.com/services/T00/B00/XXXXsecretXXXX.", "XXXXsecretXXXX",
         "hooks.slack.com/services/***"),
        ("https://discord.com/api/webhooks/123/abcDEFsecret failed", "abcDEFsecret",
         "discord.com/api/webhooks/***"),
        ("cannot read s3://me:pass1234word@host/k", "pass1234word", "s3://***@host/k"),
        ("urllib3: GET /api/?auth=a1b2c3&n=2 HTTP/1.1", "a1b2c3", "/api/?auth=***&n=***"),
        ("'https://h/x?X-Amz-Signature=deadbeef'", "deadbeef", "'https://h/x?X-Amz-Signature=***'"),
    ],
)  # fmt: skip
def test_redact_shapes(text, secret, kept):
    clean = storage.redact(text)
    assert secret not in clean and kept in clean


def test_redact_knows_the_configured_secrets(clean_env, monkeypatch):
    """Secrets of the environment and the config file go even without their URL around."""
    (clean_env / "llama").mkdir(parents=True)
    (clean_env / "llama" / "config.json").write_text(
        json.dumps({"slack_i3_webhook": "https://chat.example/hook-path-CONFSECRET1"})
    )
    monkeypatch.setenv("LLAMA_SLACK_LMA_WEBHOOK", "https://chat.example/x/ENVSECRET22")
    monkeypatch.setenv("LLAMA_GRACEDB_URL", f"https://gracedb.example/api/?t={TOKEN}")
    text = f"echo: x/ENVSECRET22, hook-path-CONFSECRET1, {TOKEN} (gracedb.example)"
    clean = storage.redact(text)
    assert "ENVSECRET22" not in clean and "CONFSECRET1" not in clean and TOKEN not in clean
    assert "gracedb.example" in clean  # hosts are not secrets: messages still name them


def test_log_filter_redacts_messages_arguments_and_tracebacks(tmp_path):
    """The filter on the handlers sees records of every llama logger, tracebacks too."""
    stream = (tmp_path / "log.txt").open("w")
    handler = logging.StreamHandler(stream)
    handler.addFilter(storage.RedactingFilter())
    logger = logging.getLogger("llama.some.child")
    logger.addHandler(handler)
    try:
        logger.warning("fetching %s", f"https://h/api/?token={TOKEN}")
        try:
            raise RuntimeError(f"server said /api/?token={TOKEN}")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        stream.close()
    text = (tmp_path / "log.txt").read_text()
    assert TOKEN not in text
    assert "https://h/api/?token=***" in text and "RuntimeError: server said" in text


# -- item 3: templates never copy credentials -------------------------------------------
@pytest.mark.parametrize(
    "var, value, why",
    [
        ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG", "AWS_* variables"),
        ("LLAMA_SLACK_LMA_WEBHOOK", "https://hooks.slack.com/services/T0/B0/abcsecret",
         "a webhook URL"),
        ("LLAMA_GRACEDB_URL", f"https://gracedb.example/api/?token={TOKEN}", "LLAMA's service URLs"),
        ("GITHUB_TOKEN", "ghp_0123456789abcdef", "its name contains TOKEN"),
        ("DB_PASSWORD", "correct-horse-battery", "its name contains PASSWORD"),
        ("RUN_BASE", f"https://ann:{PASSWORD}@data.example/x", "its value holds a URL"),
    ],
)  # fmt: skip
def test_format_file_never_gets_a_credential(var, value, why, tmp_path, clean_env, monkeypatch,
                                             capsys):  # fmt: skip
    monkeypatch.setenv(var, value)
    info = '{{"graceid": "{graceid}", "leak": "{' + var + '}"}}'
    out_dir = tmp_path / "out"
    args = _skymap_info_sweep(tmp_path, info)
    args += ["-l", str(tmp_path / "batch.log"), "-f", "SkymapInfo", "--flags",
             "--put", f"skymap_info.json={out_dir}/{{graceid}}.json"]  # fmt: skip
    code, out, err = run(args, capsys)
    assert code == 1, err
    assert "1 failed" in out
    # one clear message: the file, the field, why
    assert f"--format skymap_info.json: field {{{var}}}" in err
    assert f"the environment variable {var}, a credential ({why}" in err
    assert not out_dir.exists()  # nothing was uploaded
    assert value.encode() not in all_bytes(tmp_path)
    assert value not in out + err


def test_config_file_values_are_credentials(tmp_path, clean_env, monkeypatch, capsys):
    """A variable that repeats a config-file value, or is named like a key of it, is refused."""
    secret = "https://ztf.example/api/CONFIGSECRET"
    (clean_env / "llama").mkdir(parents=True)
    (clean_env / "llama" / "config.json").write_text(json.dumps({"ztf_url": secret}))
    monkeypatch.setenv("MY_BASE", secret)
    monkeypatch.setenv("ZTF_URL", "https://other.example/")
    for var in ("MY_BASE", "ZTF_URL"):
        info = '{{"graceid": "{graceid}", "base": "{' + var + '}"}}'
        args = _skymap_info_sweep(tmp_path, info) + ["-l", "/dev/null", "-f", "SkymapInfo",
                                                     "--flags"]  # fmt: skip
        code, out, err = run(args, capsys)
        assert code == 1 and f"field {{{var}}}" in err and "llama config file" in err, err
        assert b"CONFIGSECRET" not in all_bytes(tmp_path / "events")
        (tmp_path / "events" / "S1" / "FLAGS.json").unlink()  # the next round starts afresh


def test_path_template_with_a_credential_is_refused_at_start(tmp_path, clean_env, monkeypatch,
                                                             capsys):  # fmt: skip
    monkeypatch.setenv("AWS_SESSION_TOKEN", "FQoGZXIvYXdzEXAMPLE")
    (tmp_path / "ids.txt").write_text("S1\n")
    code, out, err = run([f"graceid={tmp_path / 'ids.txt'}", "-l", "/dev/null", "-f",
                          "SkymapInfo", "--flags", "--eventdir",
                          str(tmp_path / "ev" / "{AWS_SESSION_TOKEN}-{graceid}")], capsys)  # fmt: skip
    assert code == 2
    assert "field {AWS_SESSION_TOKEN}" in err and "a credential (AWS_* variables" in err
    assert "FQoGZXIvYXdzEXAMPLE" not in err and not (tmp_path / "ev").exists()


def test_params_may_still_name_such_fields(tmp_path, clean_env, monkeypatch, capsys):
    """A params file is the user's own data: it may give a field called token."""
    monkeypatch.setenv("token", "from-the-environment")
    (tmp_path / "tokens.txt").write_text("mine\n")
    info = '{{"graceid": "{graceid}", "token": "{token}"}}'
    args = [f"token={tmp_path / 'tokens.txt'}", *_skymap_info_sweep(tmp_path, info)]
    args += ["-l", "/dev/null", "-f", "SkymapInfo", "--flags"]
    code, out, err = run(args, capsys)
    assert code == 0, err
    info = json.loads((tmp_path / "events" / "S1" / "skymap_info.json").read_text())
    assert info["token"] == "mine"


def test_help_says_credentials_are_never_filled_in(capsys):
    with pytest.raises(SystemExit):
        batch.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "The environment never fills a {field} (here or in --format files) with a credential"
        in text
    )
    assert "replaced by ***" in text and "64 per CPU" in text
