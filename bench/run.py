"""Run the benchmarks and write BENCHMARKS.md: ``python -m bench.run [--quick] [--out BENCHMARKS.md]``."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from bench import large, million, parse_cost, send, sizes, tracker, triggerer, wait
from bench.common import REPO, cleanup_workdir, has_module, machine, workdir
from bench.report import Section, write_markdown

if TYPE_CHECKING:
    from collections.abc import Callable

SECTIONS: dict[str, Callable[[argparse.Namespace], Section]] = {
    "send": lambda a: send.run(a.quick),
    "wait": lambda a: wait.run(a.quick, a.wait_seconds),
    "parse": lambda a: parse_cost.run(a.quick),
    "sizes": lambda a: sizes.run(a.quick),
    "large": lambda a: large.run(a.quick, Path(a.out).resolve().parent),
    "million": lambda a: million.run(a.quick, Path(a.out).resolve().parent),
    "tracker": lambda a: tracker.run(a.quick),
    "triggerer": lambda a: triggerer.run(a.quick),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition (a smoke run)")
    parser.add_argument("--out", default=str(REPO / "BENCHMARKS.md"), help="where to write the Markdown")
    parser.add_argument(
        "--only", action="append", choices=sorted(SECTIONS), help="run only this section (repeatable)"
    )
    parser.add_argument(
        "--wait-seconds",
        type=float,
        default=None,
        help="the fixed delivery wait of section 2 (default: 3 s quick, 60 s full; 300 = a real 5 minutes)",
    )
    return parser.parse_args(argv)


def _run_section(key: str, args: argparse.Namespace) -> Section:
    """Run one section; a failure becomes a section that shows the traceback."""
    t0 = time.perf_counter()
    print(f"[bench] {key} ...", flush=True)
    try:
        section = SECTIONS[key](args)
    except Exception:
        section = Section(key, f"{key} (failed)", error=traceback.format_exc())
    print(f"[bench] {key} done in {time.perf_counter() - t0:.1f} s", flush=True)
    for target in section.targets:
        print(f"  {target.verdict:4}  {target.name}: {target.measured}", flush=True)
    if section.error:
        print(section.error, file=sys.stderr, flush=True)
    return section


def main(argv: list[str] | None = None) -> int:
    """Run the selected sections, write the Markdown and print the targets; 1 if a section failed."""
    args = parse_args(argv)
    started = time.perf_counter()
    info = machine()
    info.notes.append(
        "Plots: matplotlib is "
        + (
            f"installed: the plots of sections 5 and 6 are PNGs (`{large.PLOT}`, `{million.PLOT}`, next to "
            "this file), the other charts are ASCII"
            if has_module("matplotlib")
            else "not installed, so the charts are ASCII"
        )
        + "; CPU times come from `getrusage` and memory from `/proc` and tracemalloc (psutil is "
        + ("installed" if has_module("psutil") else "not installed")
        + " but not needed)."
    )
    workdir()  # made once, before any thread
    keys = args.only or ["send", "wait", "parse", "sizes", "large", "million", "tracker", "triggerer"]
    if args.quick:
        # a smoke run: the sections (each with its own sandbox) run side by side to stay short
        with ThreadPoolExecutor(max_workers=len(keys)) as pool:
            sections = list(pool.map(lambda key: _run_section(key, args), keys))
    else:
        sections = [_run_section(key, args) for key in keys]
    failed = any(s.error for s in sections)
    order = {key: number for number, key in enumerate(SECTIONS, start=1)}
    sections.sort(key=lambda s: order.get(s.key, 9))
    write_markdown(args.out, info, sections, quick=args.quick, seconds=time.perf_counter() - started)
    cleanup_workdir()
    print(f"[bench] wrote {args.out} in {time.perf_counter() - started:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
