"""Run every benchmark in one process run and write benchmarks/RESULTS.md.

    python -m benchmarks [--quick] [--compile]

``--quick`` uses smaller linear_cross_entropy / training shapes (minutes instead of
tens of minutes on 2 CPU cores); RESULTS.md records which was used.

The measured part of RESULTS.md (everything above :data:`ANALYSIS_MARKER`) is rewritten;
the hand-written analysis below the marker, which cites these tables, is kept as it is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks import linear_ce, losses, train_step
from benchmarks.timing import machine_header

ANALYSIS_MARKER = "<!-- analysis: written by hand, kept by python -m benchmarks -->"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--compile", action="store_true", help="also time torch.compile for the losses")
    p.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    args = p.parse_args()
    sections = ["# Benchmark results", "", machine_header()]
    sections += ["## Losses (float32)", "", losses.main(["--compile"] if args.compile else []), ""]
    lce_args = ["--n", "2048", "--vocab", "16384"] if args.quick else []
    sections += ["## linear_cross_entropy", "", linear_ce.main(lce_args), ""]
    ts_args = ["--batch-sizes", "128"] if args.quick else []
    sections += ["## Training step", "", train_step.main(ts_args), ""]
    out = Path(args.out)
    kept = out.read_text().partition(ANALYSIS_MARKER) if out.exists() else ("", "", "")
    if kept[1]:
        sections += [ANALYSIS_MARKER + kept[2]]
    out.write_text("\n".join(sections))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
