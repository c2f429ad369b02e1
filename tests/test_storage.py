"""llama.storage against the local disk, a real HTTP server and a real S3 endpoint."""

from __future__ import annotations

import os
import socket

import pytest

from llama import storage
from llama.storage import NotFoundError, RetryPolicy, StorageError, UnsafePathError

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


# ------------------------------------------------------------------------------ local


def test_local_roundtrip_and_atomic_put(tmp_path):
    src = tmp_path / "src.json"
    src.write_text('{"a": 1}')
    dest = tmp_path / "deep" / "er" / "dst.json"
    storage.put(src, dest)
    assert dest.read_text() == '{"a": 1}'
    assert storage.read_bytes(dest) == b'{"a": 1}'
    assert storage.read_text("file://" + str(dest)) == '{"a": 1}'
    assert storage.exists(dest) and not storage.exists(tmp_path / "nope")
    # no temporary files left beside the destination
    assert os.listdir(dest.parent) == ["dst.json"]


def test_local_get_replaces_atomically(tmp_path):
    (tmp_path / "src").write_text("new")
    dest = tmp_path / "ev" / "x.txt"
    dest.parent.mkdir()
    dest.write_text("old")
    storage.get(tmp_path / "src", dest)
    assert dest.read_text() == "new"
    assert sorted(os.listdir(dest.parent)) == ["x.txt"]


def test_local_not_found_message(tmp_path):
    with pytest.raises(NotFoundError, match="not found; check the path") as info:
        storage.read_text(tmp_path / "missing.txt")
    assert "missing.txt" in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


def test_failed_get_leaves_destination_alone(tmp_path):
    dest = tmp_path / "keep.txt"
    dest.write_text("old")
    with pytest.raises(NotFoundError):
        storage.get(tmp_path / "missing", dest)
    assert dest.read_text() == "old"
    assert os.listdir(tmp_path) == ["keep.txt"]


def test_local_get_copies_bytes_exactly_into_new_folders(tmp_path):
    data = os.urandom(3 << 20) + b"tail"  # larger than one copy block
    (tmp_path / "src.bin").write_bytes(data)
    dest = tmp_path / "ev" / "sub" / "x.bin"
    old = os.umask(0o027)
    try:
        storage.get(f"file://{tmp_path}/src.bin", dest)
    finally:
        os.umask(old)
    assert dest.read_bytes() == data
    assert dest.stat().st_mode & 0o777 == 0o640  # the umask decides, as for open()
    assert os.listdir(dest.parent) == ["x.bin"]


def test_local_get_from_a_pipe(tmp_path):
    import threading

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    payload = b"x" * 200_000  # more than a pipe buffer: read in several blocks

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(payload)

    writer = threading.Thread(target=feed)
    writer.start()
    storage.get(str(fifo), tmp_path / "out.bin")
    writer.join(timeout=5)
    assert (tmp_path / "out.bin").read_bytes() == payload


def test_configuration_is_read_only_after_a_failure(tmp_path, monkeypatch):
    (tmp_path / "src").write_text("data")
    monkeypatch.setenv("LLAMA_RETRY_BUDGET_S", "not-a-number")
    storage.get(tmp_path / "src", tmp_path / "dst")  # succeeds: no policy needed
    assert (tmp_path / "dst").read_text() == "data"
    with pytest.raises(Exception, match="LLAMA_RETRY_BUDGET_S"):
        storage.get(tmp_path / "missing", tmp_path / "dst2")


def test_put_missing_source(tmp_path):
    with pytest.raises(NotFoundError, match="no such local file"):
        storage.put(tmp_path / "absent", tmp_path / "out")


def test_put_tree_local_skips_git(tmp_path):
    ev = tmp_path / "S1"
    (ev / ".git" / "objects").mkdir(parents=True)
    (ev / ".git" / "HEAD").write_text("ref")
    (ev / "sub").mkdir()
    (ev / "a.json").write_text("a")
    (ev / "sub" / "b.txt").write_text("b")
    written = storage.put_tree(ev, tmp_path / "dump", exclude=[".git"])
    assert sorted(os.path.relpath(p, tmp_path / "dump") for p in written) == [
        "a.json",
        os.path.join("sub", "b.txt"),
    ]
    assert (tmp_path / "dump" / "sub" / "b.txt").read_text() == "b"
    assert not (tmp_path / "dump" / ".git").exists()


def test_unsupported_scheme_and_missing_dependency(monkeypatch):
    with pytest.raises(StorageError, match=r"unsupported URL scheme gs://"):
        storage.read_bytes("gs://bucket/key")
    monkeypatch.setitem(
        storage.PROTOCOLS, "s3", storage.Backend("s3", "no_such_module_xyz", "s3fs", True)
    )
    with pytest.raises(StorageError, match=r"s3:// needs no_such_module_xyz: pip install s3fs"):
        storage.read_bytes("s3://bucket/key")


# ------------------------------------------------------------------------------- HTTP


def test_http_read_and_get(http_server, tmp_path):
    base_url, directory = http_server
    (directory / "graceids.txt").write_text("S1\nS2\n")
    assert storage.read_text(f"{base_url}/graceids.txt") == "S1\nS2\n"
    storage.get(f"{base_url}/graceids.txt", tmp_path / "ev" / "g.txt")
    assert (tmp_path / "ev" / "g.txt").read_text() == "S1\nS2\n"
    assert storage.exists(f"{base_url}/graceids.txt")
    assert not storage.exists(f"{base_url}/nope.txt")


def test_http_retries_transient_500_then_succeeds(http_server, fast_retries):
    base_url, directory = http_server
    (directory / "x.txt").write_text("ok")
    http_server.fail("/x.txt", times=2, status=500)
    assert storage.read_text(f"{base_url}/x.txt") == "ok"
    assert http_server.requests.count(("GET", "/x.txt")) == 3


def test_http_gives_up_after_tries(http_server):
    base_url, directory = http_server
    (directory / "x.txt").write_text("ok")
    http_server.fail("/x.txt", times=10, status=503)
    with pytest.raises(StorageError, match=r"gave up after 2 tries .*HTTP 503") as info:
        storage.read_bytes(f"{base_url}/x.txt", retry=RetryPolicy(tries=2, base_delay=0.001))
    assert not isinstance(info.value, NotFoundError)
    assert len(http_server.requests) == 2


def test_http_exists_does_not_hide_outages(http_server, fast_retries):
    base_url, _ = http_server
    http_server.fail("/x.txt", times=10, status=500)
    with pytest.raises(StorageError, match="gave up after 3 tries"):
        storage.exists(f"{base_url}/x.txt")


def test_http_404_not_retried_and_clear(http_server, fast_retries):
    base_url, _ = http_server
    url = f"{base_url}/sim/S190425z/skymap_info.json"
    with pytest.raises(NotFoundError) as info:
        storage.read_bytes(url)
    assert str(info.value) == f"cannot read {url}: not found; check the URL"
    assert len(http_server.requests) == 1


def test_connection_refused_is_retried_then_reported(fast_retries):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # nothing listens on `port` now
    with pytest.raises(StorageError, match="gave up after 3 tries"):
        storage.read_bytes(f"http://127.0.0.1:{port}/x")


def test_http_write_refused(tmp_path, http_server):
    base_url, directory = http_server
    src = tmp_path / "a.txt"
    src.write_text("x")
    with pytest.raises(StorageError, match=r"http:// locations are read-only"):
        storage.put(src, f"{base_url}/a.txt")
    with pytest.raises(StorageError, match=r"read-only"):
        storage.put_tree(tmp_path, f"{base_url}/dump")
    assert http_server.requests == []  # refused before touching the network


def test_secrets_never_in_messages(http_server, fast_retries):
    base_url, _ = http_server
    host = base_url.split("://", 1)[1]
    url = f"http://alice:hunter2@{host}/x.txt?token=s3cr3t&X-Amz-Signature=abc&n=1"
    with pytest.raises(NotFoundError) as info:
        storage.read_bytes(url)
    msg = str(info.value)
    assert "hunter2" not in msg and "s3cr3t" not in msg and "abc" not in msg
    # every query value goes: which names carry tokens is the server's choice
    assert "n=***" in msg and "***@" in msg and "/x.txt?" in msg


def test_redact_env_secret(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMIK7MDENG")
    assert storage.redact("boom wJalrXUtnFEMIK7MDENG boom") == "boom *** boom"


# --------------------------------------------------------------------------------- S3


def test_s3_roundtrip(s3, tmp_path):
    src = tmp_path / "a.json"
    src.write_text('{"x": 1}')
    url = f"s3://{s3}/sim/S1/a.json"
    assert not storage.exists(url)
    storage.put(src, url)
    assert storage.exists(url)
    assert storage.read_text(url) == '{"x": 1}'
    storage.get(url, tmp_path / "ev" / "a.json")
    assert (tmp_path / "ev" / "a.json").read_text() == '{"x": 1}'


def test_s3_acl_public_vs_private(s3, s3_client, tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("x")
    storage.put(src, f"s3://{s3}/public.txt", public=True)
    storage.put(src, f"s3://{s3}/private.txt")

    def grantees(key):
        grants = s3_client.get_object_acl(Bucket=s3, Key=key)["Grants"]
        return {(g["Grantee"].get("URI"), g["Permission"]) for g in grants}

    assert (ALL_USERS, "READ") in grantees("public.txt")
    assert not any(uri == ALL_USERS for uri, _ in grantees("private.txt"))


def test_s3_put_tree(s3, s3_client, tmp_path):
    ev = tmp_path / "S2"
    (ev / ".git").mkdir(parents=True)
    (ev / ".git" / "HEAD").write_text("ref")
    (ev / "plots").mkdir()
    (ev / "a.json").write_text("a")
    (ev / "plots" / "p.png").write_bytes(b"\x89PNG")
    written = storage.put_tree(ev, f"s3://{s3}/dumps/S2/", public=True, exclude=[".git"])
    assert written == [f"s3://{s3}/dumps/S2/a.json", f"s3://{s3}/dumps/S2/plots/p.png"]
    keys = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=s3)["Contents"])
    assert keys == ["dumps/S2/a.json", "dumps/S2/plots/p.png"]


def test_s3_not_found_messages(s3):
    with pytest.raises(NotFoundError, match=r"s3://.*/nope.json: not found; check the bucket"):
        storage.read_bytes(f"s3://{s3}/nope.json")
    with pytest.raises(NotFoundError, match="AWS_ENDPOINT_URL"):
        storage.read_bytes("s3://no-such-bucket-llama/x")
    assert "testing" not in storage.redact("s3://b/k")


def test_s3_endpoint_change_is_picked_up(s3, tmp_path, monkeypatch):
    """A cached client must not keep talking to an old endpoint."""
    src = tmp_path / "a"
    src.write_text("x")
    storage.put(src, f"s3://{s3}/a")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(StorageError, match=f"127.0.0.1:{port}"):
        storage.read_bytes(f"s3://{s3}/a", retry=RetryPolicy(tries=1))


def test_transient_classification_of_s3_errors():
    from botocore.exceptions import ClientError

    def wrapped(code, status):
        # what s3fs raises: an OSError whose __cause__ is botocore's ClientError
        err = OSError(5, "boom")
        err.__cause__ = ClientError(
            {
                "Error": {"Code": code, "Message": "m"},
                "ResponseMetadata": {"HTTPStatusCode": status},
            },
            "GetObject",
        )
        return err

    assert storage._kind(wrapped("SlowDown", 503)) == "transient"
    assert storage._kind(wrapped("InternalError", 500)) == "transient"
    assert storage._kind(wrapped("AccessDenied", 403)) == "denied"
    assert storage._kind(wrapped("InvalidArgument", 400)) == "other"
    assert storage._kind(FileNotFoundError("x")) == "not_found"


def test_s3_slowdown_is_retried(monkeypatch):
    from botocore.exceptions import ClientError

    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            err = OSError(16, "Please reduce your request rate.")
            err.__cause__ = ClientError(
                {"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}},
                "PutObject",
            )
            raise err
        return "done"

    policy = RetryPolicy(tries=4, base_delay=0.001)
    assert storage._call("upload to", "s3://b/k", flaky, policy) == "done"
    assert len(calls) == 3


# -------------------------------------------------------------------------- safe_join


def test_safe_join_accepts_names_inside(tmp_path):
    assert storage.safe_join(tmp_path, "skymap_info.json") == tmp_path / "skymap_info.json"
    assert storage.safe_join(tmp_path, "plots/a.png") == tmp_path / "plots" / "a.png"
    assert storage.safe_join(tmp_path, "a/../b.txt") == tmp_path / "b.txt"


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../x", "..", ".", "", "~/x", "a\0b"])
def test_safe_join_refuses_escapes(tmp_path, name):
    with pytest.raises(UnsafePathError):
        storage.safe_join(tmp_path / "ev", name)


def test_safe_join_refuses_symlink_out(tmp_path):
    ev = tmp_path / "ev"
    ev.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (ev / "link").symlink_to(outside)
    (ev / "filelink").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(UnsafePathError, match="symlink"):
        storage.safe_join(ev, "link/x.txt")
    with pytest.raises(UnsafePathError):
        storage.safe_join(ev, "filelink")
    assert issubclass(UnsafePathError, ValueError)
    # a link that stays inside the event is fine, as is a name not there yet
    (ev / "real.txt").write_text("x")
    (ev / "inner").symlink_to(ev / "real.txt")
    assert storage.safe_join(ev, "inner") == ev / "inner"
    assert storage.safe_join(ev, "new.txt") == ev / "new.txt"


def test_read_text_from_a_pipe(tmp_path):
    # bash's <(...) hands over /dev/fd/N, a pipe that cannot seek
    import threading

    fifo = tmp_path / "values"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "w") as f:
            f.write("S1\nS2\n")

    writer = threading.Thread(target=feed)
    writer.start()
    assert storage.read_text(str(fifo)) == "S1\nS2\n"
    writer.join(timeout=5)
