"""Compiles the Triton kernels for an NVIDIA GPU (sm_90) without one: Triton's front end,
its GPU passes and ptxas catch what the CPU interpreter does not (a kernel's globals must
be constexpr, libdevice calls, layouts). Run by tests/test_kernels.py in a fresh process
(without TRITON_INTERPRET); prints one line per variant: name, then the transcendental
PTX instructions it uses."""

import re
import sys

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from noisejump.kernels._mse_triton import _keyed_mse_kernel
from noisejump.kernels._normal_triton import ACCURATE, FAST
from noisejump.kernels._q_sample_triton import _q_sample_kernel

TARGET = GPUTarget("cuda", 90, 32)
COMMON = {"signal_ptr": "*fp32", "sigma_ptr": "*fp32", "scale_ptr": "*fp32"}
COMMON |= {"key_a_ptr": "*i64", "key_b_ptr": "*i64", "seed": "u64", "stream": "i32"}
COMMON |= {"n_elements": "i32", "runs": "i32", "run": "i32", "stride": "i64", "offset": "i64"}
COMMON |= {"blocks_per_run": "i32", "frames": "i32", "inner": "i32"}
INSTRUCTIONS = ("sin.approx.f32", "cos.approx.f32", "lg2.approx.f32", "sqrt.rn", "sqrt.approx")


def compile_ptx(kernel, pointers, constants) -> str:
    signature = pointers | COMMON | {name: "constexpr" for name in constants}
    return triton.compile(ASTSource(kernel, signature, constants), target=TARGET).asm["ptx"]


def main() -> None:
    variants = {}
    for math, name in ((ACCURATE, "accurate"), (FAST, "fast")):
        variants[f"q_sample bf16 {name}"] = compile_ptx(
            _q_sample_kernel,
            {"x0_ptr": "*bf16", "x_t_ptr": "*bf16", "noise_ptr": "*bf16", "keep_ptr": "*fp32"},
            {"HAS_SCALE": True, "HAS_KEEP": False, "PER_FRAME": False, "STORE_NOISE": True}
            | {"MATH": math, "BLOCK": 256},
        )
    # per-frame coefficients and clean frames (diffusion forcing)
    variants["q_sample fp32 per frame"] = compile_ptx(
        _q_sample_kernel,
        {"x0_ptr": "*fp32", "x_t_ptr": "*fp32", "noise_ptr": "*fp32", "keep_ptr": "*fp32"},
        {"HAS_SCALE": False, "HAS_KEEP": True, "PER_FRAME": True, "STORE_NOISE": True}
        | {"MATH": ACCURATE, "BLOCK": 256},
    )
    for per_frame in (False, True):
        variants[f"mse v fp32 accurate{' per frame' * per_frame}"] = compile_ptx(
            _keyed_mse_kernel,
            {"pred_ptr": "*fp32", "x0_ptr": "*fp32", "grad_ptr": "*fp32", "partial_ptr": "*fp32"}
            | {"weight_ptr": "*fp32"},
            {"HAS_SCALE": False, "V_TARGET": True, "PER_FRAME": per_frame}
            | {"NOISE_DTYPE": tl.bfloat16, "MATH": ACCURATE, "BLOCK": 256},
        )
    for name, ptx in variants.items():
        used = [i for i in INSTRUCTIONS if re.search(re.escape(i), ptx)]
        print(name, ":", " ".join(used))


if __name__ == "__main__":
    sys.exit(main())
