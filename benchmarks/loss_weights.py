"""The per-call cost of keyed_mse's loss weights on the CPU (issue 11, item 3).

For each shape: keyed_mse unweighted, with ``min_snr_gamma=5`` (the path before the
weighting registry too), and with ``weighting=`` P2 and EDM's; and the cost of a
weighting's ``weights(schedule, t, prediction)`` alone (the schedule check, log-space
formula and float32 overflow check). Medians over rounds in which the variants run in
turn. Run it on two checkouts to compare (a checkout without ``weighting=`` shows only
the first two columns).

    OMP_NUM_THREADS=2 python benchmarks/loss_weights.py [--rounds 100]
"""

import argparse
import inspect

import torch

import noisejump as nj
from noisejump.bench.timing import interleaved_median_times
from noisejump.loss import keyed_mse

SHAPES = [(1, 4, 8, 8), (8, 4, 32, 32)]


def _median_us(fns: dict, rounds: int, calls: int) -> dict[str, float]:
    """Per-call medians in microseconds, the functions timed in turn (one run, so ratios hold)."""
    seconds = interleaved_median_times(list(fns.values()), "cpu", rounds, calls=calls)
    return {name: 1e6 * value for name, value in zip(fns, seconds, strict=True)}


def _variants(process, shape: tuple[int, ...], registry: bool) -> dict:
    """The calls to time for one shape (a function, so each lambda binds its own tensors)."""
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(shape, generator=generator)
    output = torch.randn(shape, generator=generator)
    t = torch.randint(0, 1000, (shape[0],), generator=generator)
    common = {"seed": 1, "keys": torch.arange(shape[0]), "prediction": "v", "x0": x0}
    fns = {
        "unweighted": lambda: keyed_mse(process, output, t, **common),
        "min_snr_gamma": lambda: keyed_mse(process, output, t, min_snr_gamma=5.0, **common),
    }
    if registry:
        from noisejump.objective import get_weighting

        p2, edm = get_weighting("p2"), get_weighting("edm")
        fns["p2"] = lambda: keyed_mse(process, output, t, weighting=p2, **common)
        fns["edm"] = lambda: keyed_mse(process, output, t, weighting=edm, **common)
        fns["p2.weights alone"] = lambda: p2.weights(process.schedule, t, "v")
    return fns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    process = nj.ForwardProcess(nj.get_schedule("linear", 1000))
    registry = "weighting" in inspect.signature(keyed_mse).parameters
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), medians in us")
    for shape in SHAPES:
        with torch.no_grad():
            medians = _median_us(_variants(process, shape, registry), args.rounds, 20)
        cells = "  ".join(f"{name} {value:7.1f}" for name, value in medians.items())
        print(f"{str(shape):>16}  {cells}")


if __name__ == "__main__":
    main()
