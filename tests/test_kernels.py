"""Runs the kernel tests (tests/kernels_interpreted.py) in Triton's CPU interpreter, and
compiles the kernels for an NVIDIA GPU without one (tests/kernels_ptx.py).

TRITON_INTERPRET=1 must be set before triton is first imported, and another test module
(or a library such as diffusers) may import triton earlier in this process: so both run
in a fresh process. Their own report is shown when they fail.
"""

import os
import subprocess
import sys
from pathlib import Path

INTERPRETED_TESTS = Path(__file__).with_name("kernels_interpreted.py")
PTX_CHECK = Path(__file__).with_name("kernels_ptx.py")


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


def test_kernels_compile_for_a_gpu_and_fast_mode_uses_the_approximations():
    environment = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run(
        [sys.executable, str(PTX_CHECK)],
        env=environment | {"OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    used = dict(line.split(" : ") for line in result.stdout.splitlines() if " : " in line)
    assert used["q_sample bf16 accurate"] == "sqrt.rn"  # libdevice: no approximations
    assert used["q_sample bf16 fast"].split() == [
        "sin.approx.f32",
        "cos.approx.f32",
        "lg2.approx.f32",
        "sqrt.approx",
    ]
    assert used["mse v fp32 accurate"] == "sqrt.rn"
    assert used["q_sample fp32 per frame"] == used["mse v fp32 accurate per frame"] == "sqrt.rn"


def test_importing_noisejump_does_not_import_triton():
    code = "import sys, noisejump, noisejump.loss; sys.exit('triton' in sys.modules)"
    assert _run(["-c", code]).returncode == 0
