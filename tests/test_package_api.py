"""The public API of ``import llama``: every name there, each module imported only at
its name's first use (``llama batch``'s fork server and every command import the
package first)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import llama

_FRESH = """
import json, sys
import llama
loaded = sorted(m for m in sys.modules if m.startswith("llama."))
from llama import *
print(json.dumps({"loaded": loaded, "star": sorted(n for n in dir() if n in llama.__all__)}))
"""


def test_importing_the_package_imports_none_of_its_modules_until_a_name_is_used():
    done = subprocess.run([sys.executable, "-c", _FRESH], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["loaded"] == []
    assert seen["star"] == sorted(llama.__all__)


@pytest.mark.parametrize("name", llama.__all__)
def test_each_public_name_is_its_modules_object(name):
    value = getattr(llama, name)
    assert value is getattr(importlib.import_module(llama._API[name]), name)
    assert name in dir(llama)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'run_batches'"):
        llama.run_batches  # noqa: B018
    assert not hasattr(llama, "run_batches")
