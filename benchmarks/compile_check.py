"""Compiled against eager, bit for bit: every noise family, both compile modes, two dtypes.

For each noise family (noisejump.noise.examples), torch.compile mode (default and
fullgraph) and dtype (float32, bfloat16), one compiled function returns keyed q_sample
(x_t and e) at per-sample steps, keyed_mse (epsilon and v), keyed_x_t and, where the
family allows, per-element steps; then continuous schedules (VP, sub-VP, EDM, flow
matching, a log-SNR) with isotropic noise. Each compile starts afresh
(``torch._dynamo.reset``). Each output is compared with eager: "bitwise",
or the largest absolute difference. The per-element steps vary along the first event
axis: for the frame families (frames-mixed, frames-progressive, kronecker) that is one step
per frame, the "frames" path, which reads nothing on the host; for the other correlated
families it is the increments path, which reads the number of distinct steps on the host,
so fullgraph refuses it: that is reported, not hidden.

    OMP_NUM_THREADS=2 python benchmarks/compile_check.py [--families pink offset ...]
"""

import argparse
import time

import torch

import noisejump as nj
from noisejump.continuous import EDM, VPSDE, FlowMatching, LogSNR, SubVPSDE
from noisejump.loss import keyed_mse, keyed_x_t
from noisejump.noise.examples import EXAMPLES

SEED = 7


def _outputs(process, x0, output, t, keys):
    return {
        "q_sample x_t, e": process.q_sample(x0, t, seed=SEED, keys=keys),
        "keyed_mse eps": keyed_mse(process, output, t, seed=SEED, keys=keys, x0=x0),
        "keyed_mse v": keyed_mse(process, output, t, seed=SEED, keys=keys, prediction="v", x0=x0),
        "keyed_x_t": keyed_x_t(process, x0, t, seed=SEED, keys=keys),
    }


def _per_element_outputs(process, x0, output, t, keys):
    return {
        "q_sample x_t, e": process.q_sample(x0, t, seed=SEED, keys=keys),
        "keyed_mse eps": keyed_mse(process, output, t, seed=SEED, keys=keys, x0=x0),
    }


def _compare(eager, compiled) -> str:
    differ = {}
    for name, e in eager.items():
        e = e if isinstance(e, tuple) else (e,)
        c = compiled[name] if isinstance(compiled[name], tuple) else (compiled[name],)
        worst = max((a.float() - b.float()).abs().max().item() for a, b in zip(e, c, strict=True))
        if worst > 0:
            differ[name] = worst
    return "bitwise" if not differ else "; ".join(f"{n}: {w:.2g}" for n, w in differ.items())


def _check(label, fn, arguments, mode):
    eager = fn(*arguments)
    torch._dynamo.reset()  # each mode compiles afresh
    start = time.perf_counter()
    try:
        compiled = torch.compile(fn, fullgraph=mode == "fullgraph")(*arguments)
    except Exception as error:  # report what the compiler refused, then go on
        message = str(error).strip().splitlines()[0][:90]
        print(f"  {label:40} {mode:9}  refused: {type(error).__name__}: {message}")
        return
    seconds = time.perf_counter() - start
    print(f"  {label:40} {mode:9}  {_compare(eager, compiled)}  ({seconds:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=sorted(EXAMPLES))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    args = parser.parse_args()
    torch._dynamo.config.cache_size_limit = 256
    schedule = nj.get_schedule("linear", 1000)
    generator = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}: compiled vs eager, batch 3, keys beyond 32 bits")
    for name in args.families:
        example = EXAMPLES[name]
        process = nj.ForwardProcess(schedule, noise=example.build())
        for dtype in (getattr(torch, d) for d in args.dtypes):
            x0 = torch.randn(3, *example.exact, generator=generator).to(dtype)
            output = torch.randn(3, *example.exact, generator=generator).to(dtype)
            t = torch.tensor([0, 400, 999])
            per_element = torch.randint(
                0, 1000, (3, example.exact[0], *[1] * (len(example.exact) - 1)), generator=generator
            )
            keys = torch.tensor([1, 2**40 + 3, 2**62])

            label = f"{name} {str(dtype).removeprefix('torch.')}"
            for outputs, steps, kind in (
                (_outputs, t, "per-sample t"),
                (_per_element_outputs, per_element, "per-element t"),
            ):

                def fn(x0, output, t, keys, process=process, outputs=outputs):
                    return outputs(process, x0, output, t, keys)

                for mode in ("default", "fullgraph"):
                    _check(f"{label}, {kind}", fn, (x0, output, steps, keys), mode)
    continuous = {
        "VPSDE": VPSDE(),
        "SubVPSDE": SubVPSDE(),
        "EDM": EDM(),
        "FlowMatching": FlowMatching(),
        "LogSNR": LogSNR(lambda u: 10.0 - 20.0 * u),
    }
    x0 = torch.randn(3, 2, 8, 8, generator=generator)
    keys = torch.tensor([1, 2, 3])
    for name, schedule in continuous.items():
        process = nj.ForwardProcess(schedule)
        t = torch.tensor([0.5, 1.0, 2.5] if name == "EDM" else [0.1, 0.5, 0.9], dtype=torch.float64)

        def fn(x0, t, keys, process=process):
            return {"q_sample x_t, e": process.q_sample(x0, t, seed=SEED, keys=keys)}

        for mode in ("default", "fullgraph"):
            _check(f"{name} (continuous) float32", fn, (x0, t, keys), mode)


if __name__ == "__main__":
    main()
