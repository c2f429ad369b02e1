"""`llama.cli.batch._exit_now` (a second Ctrl-C, or the end of an interrupted run)
ends the process at once whatever its clean-up meets: a CI run hung when a second
Ctrl-C landed while the first's clean-up imported multiprocessing, and the normal exit
that followed joined threads still waiting on a silent server."""

from __future__ import annotations

import subprocess
import sys
import time

_PROBE = """
import sys, threading, time, types
from llama.cli.batch import _exit_now

# what a second Ctrl-C's handler met: multiprocessing half-initialised by the first's
# import, and the standard output in the middle of a write ("reentrant call")
sys.modules["multiprocessing"] = types.ModuleType("multiprocessing")


class Busy:
    def write(self, text):
        return len(text)

    def flush(self):
        raise RuntimeError("reentrant call inside <_io.BufferedWriter name='<stdout>'>")


threading.Thread(target=time.sleep, args=(120,)).start()  # a normal exit would join it
sys.stdout = Busy()
_exit_now(130)
"""


def test_exit_now_ends_the_process_whatever_its_clean_up_meets():
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60
    )
    assert time.monotonic() - start < 30  # not the thread's 120 s
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
