"""The noising benchmark for several shapes and dtypes in one run (a thin wrapper).

    python benchmarks/noising.py                          # CPU, 64 x 3 x 64 x 64 float32
    python benchmarks/noising.py --device cuda --shapes 256x3x256x256 256x4x64x64 \\
        --dtypes float32 bfloat16 --json

The measurements are ``noisejump.bench.noising.noising`` (``noisejump bench --suite
noising`` runs one shape and dtype).
"""

from __future__ import annotations

import argparse
import json

from noisejump.bench.noising import noising
from noisejump.commands._types import DTYPES, device, positive_int


def shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(positive_int(n) for n in text.lower().split("x"))
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"a shape is like 64x3x64x64, got {text!r}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", type=device, default="cpu")
    parser.add_argument("--shapes", type=shape, nargs="+", default=[(64, 3, 64, 64)])
    parser.add_argument("--dtypes", choices=DTYPES, nargs="+", default=["float32"])
    parser.add_argument("--repeats", type=positive_int, default=7)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--no-chain", action="store_true", help="skip the chain to t = 500")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    reports = [
        noising(
            batch_shape,
            DTYPES[dtype],
            device=args.device,
            repeats=args.repeats,
            compile=args.compile,
            chain=not args.no_chain,
        )
        for batch_shape in args.shapes
        for dtype in args.dtypes
    ]
    if args.json:
        print(json.dumps([report.as_dict() for report in reports], indent=2))
    else:
        print("\n\n".join(report.table() for report in reports))


if __name__ == "__main__":
    main()
