"""Run benchmarks and rewrite their sections of docs/benchmarks.md.

    python -m benchmarks.run                    # every benchmark, full settings (long: run in background)
    python -m benchmarks.run --quick            # tiny settings: checks the machinery in a few minutes
    python -m benchmarks.run --only anomaly     # one benchmark; the other sections are kept as they are

Each section records the command and the date that produced it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import re
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch

from benchmarks import (anomaly, bad_inputs, devices, first_run, invocations, local_defects, regimes, reliability,
                        signals, synthesis)

# name -> run(quick) returning the section's markdown; each synthesis setting is a section of its own
BENCHMARKS = {
    **{f"synthesis-{data}": partial(synthesis.run, setting=(data, minority)) for data, minority in synthesis.SETTINGS},
    **{f"colour-{name}-{side}": partial(synthesis.run_colour, setting=(name, side, minority))
       for name, side, minority in synthesis.COLOUR_SETTINGS},
    **{f"regimes-{data}": partial(regimes.run, data) for data in regimes.DATA},
    "anomaly": anomaly.run,
    "devices": devices.run,
    "local-defects": local_defects.run,
    "bad-inputs": bad_inputs.run,
    "invocations": invocations.run,
    "signals": signals.run,
    "first-run": first_run.run,
    "reliability": reliability.run,
    "score-maps": reliability.run_maps,
}
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = (
    "# Benchmarks\n\n"
    "Every number here is written by `make bench` (`python -m benchmarks.run`); each section names the\n"
    "exact command and date that produced it. GAN results always stand beside the non-GAN baselines\n"
    "measured in the same run. Nothing here is tuned on a test split.\n"
)


def _commit() -> str:
    """The checked-out commit, with ``+changes`` when the work tree's code (anything outside docs/)
    differs from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        # docs/ is what the benchmarks write (this file and its figures): changes elsewhere are code changes
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + ("+changes" if dirty else "")


def _cpu() -> str:
    """The processor and the kernels torch picked for it (e.g. ``AMD EPYC, AVX512 kernels``): two hosts
    of one cloud type can differ in both, and with them in speed and in the last bits of every
    float a GAN's training amplifies (round 15 of docs/gan-synthesis.md)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {torch.backends.cpu.get_cpu_capability()} kernels"


def _section(name: str, body: str, quick: bool) -> str:
    command = f"python -m benchmarks.run --only {name}" + (" --quick" if quick else "")
    stamp = (f"_Produced by `{command}` at commit {_commit()} on {dt.date.today().isoformat()}: "
             f"{platform.machine()} ({_cpu()}), {torch.get_num_threads()} torch threads, torch {torch.__version__}._")
    warning = "\n**Quick mode**: tiny settings that only check the machinery; the numbers mean little.\n" if quick else ""
    return f"<!-- bench:{name} -->\n{body.strip()}\n\n{stamp}\n{warning}<!-- /bench:{name} -->"


def update_doc(doc: Path, sections: dict[str, str]) -> str:
    """Replace the named sections in ``doc`` (appending new ones) and keep the rest."""
    text = doc.read_text() if doc.exists() else HEADER
    for name, block in sections.items():
        pattern = re.compile(rf"<!-- bench:{name} -->.*?<!-- /bench:{name} -->", re.S)
        text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks the machinery, numbers mean little")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append", help="run only these benchmarks")
    parser.add_argument("--doc", type=Path, default=DOC, help="markdown file to update")
    args = parser.parse_args(argv)
    sections = {}
    for name in args.only or list(BENCHMARKS):
        start = time.perf_counter()
        print(f"[bench] {name} ...", flush=True)
        sections[name] = _section(name, BENCHMARKS[name](quick=args.quick), args.quick)
        print(f"[bench] {name} done in {time.perf_counter() - start:.0f} s", flush=True)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(update_doc(args.doc, sections))
    print(f"[bench] updated {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
