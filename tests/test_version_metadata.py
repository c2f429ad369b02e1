"""The package's version: one constant, which the installed metadata repeats."""

from __future__ import annotations

import re
from importlib import metadata

import pytest

from llama.version import __version__


def test_the_installed_metadata_has_the_package_version():
    # pyproject.toml reads the version from llama/version.py: an install made before
    # the constant last changed says otherwise (reinstall: pip install -e .)
    try:
        installed = metadata.version("llama")
    except metadata.PackageNotFoundError:
        pytest.skip("llama is not installed (running from a bare source tree)")
    assert installed == __version__


def test_the_version_is_plain_semantic_versioning():
    # release_problem (-D) and the results' provenance read it as X.Y.Z
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)
