"""Runs the kernel tests (tests/kernels_interpreted.py) in Triton's CPU interpreter.

TRITON_INTERPRET=1 must be set before triton is first imported, and another test module
(or a library such as diffusers) may import triton earlier in this process: so the kernel
tests run in a fresh process. Their own report is shown when they fail.
"""

import os
import subprocess
import sys
from pathlib import Path

INTERPRETED_TESTS = Path(__file__).with_name("kernels_interpreted.py")


def _run(arguments, **environment):
    env = dict(os.environ, OMP_NUM_THREADS="1", **environment)
    return subprocess.run(
        [sys.executable, *arguments], env=env, capture_output=True, text=True, check=False
    )


def test_kernels_in_the_triton_interpreter():
    result = _run(
        ["-m", "pytest", str(INTERPRETED_TESTS), "-q", "-p", "no:cacheprovider"],
        TRITON_INTERPRET="1",
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout


def test_importing_noisejump_does_not_import_triton():
    code = "import sys, noisejump, noisejump.loss; sys.exit('triton' in sys.modules)"
    assert _run(["-c", code]).returncode == 0
