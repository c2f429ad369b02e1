"""The version read from the installed metadata without importlib.metadata."""

from __future__ import annotations

from importlib import metadata

from llama.version import __version__, _metadata_version


def _dist(folder, name: str, version: str, kind: str = ".dist-info") -> None:
    where = folder / f"{name}-{version}{kind}"
    where.mkdir()
    headers = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nVersion: 9.9.9\n"
    (where / ("METADATA" if kind == ".dist-info" else "PKG-INFO")).write_text(headers)


def test_the_same_version_as_importlib_metadata(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    _dist(first, "Some_Dist", "1.2.3")
    _dist(second, "some.dist", "4.5.6")  # further along the path: not the one found
    _dist(first, "old_style", "0.7", ".egg-info")
    monkeypatch.syspath_prepend(str(second))
    monkeypatch.syspath_prepend(str(first))
    for name in ("some-dist", "Some.Dist", "old-style"):
        assert _metadata_version(name) == metadata.version(name)
    assert _metadata_version("some-dist") == "1.2.3"  # the headers' Version, not the body's
    assert _metadata_version("old_style") == "0.7"


def test_what_is_not_plain_is_left_to_importlib_metadata(tmp_path, monkeypatch):
    _dist(tmp_path, "twice", "1.0")
    _dist(tmp_path, "twice", "2.0")  # two candidates in one folder
    (tmp_path / "headless-1.0.dist-info").mkdir()  # no METADATA
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _metadata_version("twice") is None
    assert _metadata_version("headless") is None
    assert _metadata_version("not-installed-anywhere") is None


def test_the_package_version_is_the_installed_one():
    try:
        installed = metadata.version("llama")
    except metadata.PackageNotFoundError:
        installed = "0.0.0+unknown"
    assert __version__ == installed
