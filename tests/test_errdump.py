"""llama.batch.errdump: dumps to local and S3, one bad destination does not stop others."""

from __future__ import annotations

import json
import logging

import pytest

from llama.batch.errdump import ERRDUMP_LOG, dump_event

TB = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: boom'


@pytest.fixture
def event_dir(tmp_path):
    ev = tmp_path / "events" / "S190425z"
    (ev / ".git" / "objects").mkdir(parents=True)
    (ev / ".git" / "HEAD").write_text("ref: refs/heads/main")
    (ev / "plots").mkdir()
    (ev / "skymap_info.json").write_text('{"graceid": "S190425z"}')
    (ev / ".skymap_info.json.meta.json").write_text("{}")
    (ev / "plots" / "a.png").write_bytes(b"\x89PNG")
    return ev


def test_dump_local(event_dir, tmp_path):
    vector = {"graceid": "S190425z", "run": "3"}
    places = dump_event(event_dir, [str(tmp_path / "dumps" / "run{run}")], TB, vector, environ={})
    dump = tmp_path / "dumps" / "run3" / "S190425z"
    assert places == [str(dump)]
    assert sorted(p.relative_to(dump).as_posix() for p in dump.rglob("*") if p.is_file()) == [
        ".skymap_info.json.meta.json",
        ERRDUMP_LOG,
        "plots/a.png",
        "skymap_info.json",
    ]
    text = (dump / ERRDUMP_LOG).read_text()
    assert "time (UTC): " in text and "+00:00" in text
    assert json.dumps(vector, sort_keys=True) in text
    assert text.rstrip().endswith("ValueError: boom")
    # the event directory itself is left as it was
    assert not (event_dir / ERRDUMP_LOG).exists()


def test_dump_s3_and_local_with_env_template(event_dir, tmp_path, s3, s3_client, monkeypatch):
    monkeypatch.setenv("LLAMA_TEST_DUMP_BUCKET", s3)
    places = dump_event(
        event_dir,
        ["s3://{LLAMA_TEST_DUMP_BUCKET}/dumps/", str(tmp_path / "local")],
        TB,
        {"graceid": "S190425z"},
        public=True,
    )
    assert places == [f"s3://{s3}/dumps/S190425z", str(tmp_path / "local" / "S190425z")]
    keys = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=s3)["Contents"])
    assert keys == [
        "dumps/S190425z/.skymap_info.json.meta.json",
        f"dumps/S190425z/{ERRDUMP_LOG}",
        "dumps/S190425z/plots/a.png",
        "dumps/S190425z/skymap_info.json",
    ]
    body = s3_client.get_object(Bucket=s3, Key=f"dumps/S190425z/{ERRDUMP_LOG}")["Body"].read()
    assert b"ValueError: boom" in body
    grants = s3_client.get_object_acl(Bucket=s3, Key=f"dumps/S190425z/{ERRDUMP_LOG}")["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("/AllUsers") for g in grants)


def test_failing_destinations_are_logged_and_skipped(event_dir, tmp_path, http_server, caplog):
    base_url, _ = http_server
    good = str(tmp_path / "good")
    with caplog.at_level(logging.ERROR, logger="llama.batch.errdump"):
        places = dump_event(
            event_dir,
            [
                str(tmp_path / "{no_such_field}"),  # template error
                f"{base_url}/dumps",  # read-only location
                good,
            ],
            TB,
            {"graceid": "S190425z"},
            environ={},
        )
    assert places == [str(tmp_path / "good" / "S190425z")]
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert "no_such_field" in messages and "read-only" in messages
    assert http_server.requests == []


def test_missing_event_dir_still_dumps_log(tmp_path):
    places = dump_event(tmp_path / "gone", [str(tmp_path / "d")], TB, {}, environ={})
    assert places == [str(tmp_path / "d" / "gone")]
    assert (tmp_path / "d" / "gone" / ERRDUMP_LOG).exists()
