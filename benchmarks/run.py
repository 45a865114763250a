"""Run every benchmark and rewrite docs/benchmarks.md.

    python -m benchmarks.run            # full settings (minutes to tens of minutes on 2 cores)
    python -m benchmarks.run --quick    # tiny settings, checks the machinery in about a minute
    python -m benchmarks.run --only baselines
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import time
from pathlib import Path

import torch

from benchmarks import baselines

BENCHMARKS = {"baselines": baselines}
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks the machinery, numbers mean little")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append", help="run only these benchmarks")
    parser.add_argument("--doc", type=Path, default=DOC, help="markdown file to rewrite")
    args = parser.parse_args(argv)
    selected = args.only or list(BENCHMARKS)
    command = "make bench" + (" BENCH_ARGS=--quick" if args.quick else "")
    sections = [
        "# Benchmarks\n",
        f"Written by `{command}` (`python -m benchmarks.run{' --quick' if args.quick else ''}`) on "
        f"{dt.date.today().isoformat()}: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"Python {platform.python_version()}, torch {torch.__version__}.",
        "Every number below is produced by that command; rerun it to reproduce.\n",
    ]
    if args.quick:
        sections.append("**Quick mode**: tiny settings that only check the machinery. Run `make bench` for real numbers.\n")
    for name in selected:
        start = time.perf_counter()
        print(f"[bench] {name} ...", flush=True)
        sections.append(BENCHMARKS[name].run(quick=args.quick))
        print(f"[bench] {name} done in {time.perf_counter() - start:.0f} s", flush=True)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text("\n".join(sections) + "\n")
    print(f"[bench] wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
