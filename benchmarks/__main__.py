"""``python -m benchmarks``: run the side-by-side benchmarks and report the ratios.

Examples::

    python -m benchmarks                                  # everything, a few minutes
    python -m benchmarks --quick --only sqlite            # a ~30 s smoke run
    python -m benchmarks --only dcb                       # conditional appends (DCB)
    python -m benchmarks --write docs/benchmarks.md       # record the figures
    python -m benchmarks --only scale --write docs/benchmarks.md   # 10 M events, ~1 hour
    python -m benchmarks --only replicas --write docs/benchmarks.md  # a primary and a standby

The scale and replicas benchmarks are never part of the default run; writing
their figures replaces only their own block of the page, and the default run
keeps those blocks.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchmarks import (
    async_bench,
    costs,
    dcb_bench,
    entities_bench,
    lifecycle_bench,
    partitions_bench,
    personal_bench,
    postgres_bench,
    projections_bench,
    relay_bench,
    replicas_bench,
    scale,
    scale_report,
    sqlite_bench,
    startup_bench,
)
from benchmarks.common import Settings
from benchmarks.report import Run, console, markdown, section_markdown

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"

PREAMBLE = [
    "Side-by-side figures, all measured in the same run on the same machine: Conduit, "
    "the raw driver doing the same inserts in the same transactions, and the "
    "[`eventsourcing`](https://pypi.org/project/eventsourcing/) library on the same "
    "engine. Ratios are Conduit's figure divided by the other's (above 1: Conduit is "
    "faster). These are not tests: no timing is asserted anywhere in the test suite.",
    "",
    "Run them with `make bench` (which installs the `bench` extra), or:",
    "",
    "```sh",
    ".venv/bin/python -m benchmarks                             # everything (a few minutes)",
    ".venv/bin/python -m benchmarks --only sqlite --quick       # a ~30 s smoke run",
    ".venv/bin/python -m benchmarks --write docs/benchmarks.md  # rewrite this page",
    ".venv/bin/python -m benchmarks --only scale --write docs/benchmarks.md  # 10 M events",
    "```",
    "",
    "The scale benchmark (10 M events, about an hour) is not part of the default run; its "
    "figures, at the end of this page, come from a run of their own, which rewrites only "
    "them (and the default run keeps them).",
    "",
    "`--postgres-url` names the server (default "
    f"`{DEFAULT_POSTGRES}`); the run creates the database `{postgres_bench.DATABASE}` "
    "and drops it afterwards.",
]

CLOSING = [
    "## Reading these figures",
    "",
    "- Each write measurement runs for a fixed time and is repeated in rounds with the "
    "contenders interleaved (a different one first each round); the table keeps each "
    "contender's best round. Reads repeat for the same time after a warm-up read.",
    "- The machine has **2 cores**: with 8 writer processes, the writers, the PostgreSQL "
    "backends serving them and the WAL writer all share those 2 cores, so the 8-writer "
    "figures measure CPU contention as much as lock contention.",
    "- The machine is shared (see the load average above): other work running at the "
    "same time makes individual figures noisy, which the interleaved rounds only partly "
    "absorb. Compare ratios, not absolute figures, between runs.",
    "- SQLite's durability: by default Conduit opens its file with `synchronous=FULL` in "
    "WAL mode, so a committed event survives a power loss. `sqlite:///file.db"
    "?synchronous=normal` is faster for single-event appends (no fsync per commit, only at "
    "checkpoints) at a cost: a power loss or OS crash may lose the last transactions "
    "(never a process crash, and the file stays consistent). Both settings are measured "
    "above, each against the others at the same setting.",
]


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the sections, print and optionally write the report."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Conduit's side-by-side benchmarks (not part of the test suite).",
    )
    parser.add_argument(
        "--only",
        choices=(
            "sqlite",
            "postgres",
            "projections",
            "entities",
            "personal",
            "async",
            "relay",
            "dcb",
            "startup",
            "partitions",
            "scale",
            "replicas",
            "lifecycle",
        ),
        help="run one section (scale, ~1 hour, replicas and lifecycle: only this way)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a ~30 s smoke run, figures indicative (scale: 100,000 events)",
    )
    parser.add_argument("--write", metavar="PATH", type=Path, help="write the Markdown report here")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES, help="a server (superuser)")
    parser.add_argument("--workdir", type=Path, help="where SQLite files go (default: a temp dir)")
    parser.add_argument(
        "--memory-events",
        type=int,
        metavar="N",
        help="length of the long stream iterated under tracemalloc (default 1,000,000)",
    )
    parser.add_argument(
        "--scale-stages",
        metavar="N,N,...",
        type=_stages,
        help="scale: the stages, in events (default 0,1000000,10000000)",
    )
    parser.add_argument(
        "--scale-database",
        metavar="NAME",
        default=scale.DATABASE,
        help=f"scale: the database made on the server and dropped after (default {scale.DATABASE})",
    )
    args = parser.parse_args(argv)

    if args.only == "scale":
        return _scale(args)
    if args.only == "replicas":
        return _replicas(args)
    if args.only == "lifecycle":
        return _lifecycle(args, argv)
    settings = Settings.quick() if args.quick else Settings()
    if args.memory_events:
        short = min(settings.memory_short, max(1, args.memory_events // 10))
        settings = replace(settings, memory_long=args.memory_events, memory_short=short)
    workdir = Path(tempfile.mkdtemp(prefix="conduit-bench-", dir=args.workdir))
    command = "python -m benchmarks " + shlex.join(sys.argv[1:] if argv is None else argv)
    run = Run(command.strip(), args.quick, workdir)
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    failed = False
    try:
        if args.only in (None, "sqlite"):
            run.sections.append(sqlite_bench.run(settings, workdir, log))
            print(console(run.sections[-1]), flush=True)
            run.sections.append(costs.run(workdir, log))
            print(console(run.sections[-1]), flush=True)
        if args.only in (None, "postgres"):
            try:
                for section in postgres_bench.run(settings, args.postgres_url, log):
                    run.sections.append(section)
                    print(console(section), flush=True)
            except Exception as exc:  # report what could not run, and still write the rest
                failed = True
                run.skipped["PostgreSQL"] = f"{type(exc).__name__}: {exc}"
                log(f"PostgreSQL section failed: {exc}")
        for only, module, title in (
            ("projections", projections_bench, "Projections (issue 4)"),
            ("entities", entities_bench, "Entities (issue 6)"),
            ("async", async_bench, "Asyncio and group commit (issue 13)"),
            ("relay", relay_bench, "Relays (issue 15)"),
            ("personal", personal_bench, "Personal data (issue 17)"),
            ("partitions", partitions_bench, "Partitions (issue 14)"),
            ("startup", startup_bench, "Start-up"),
        ):
            if args.only in (None, only):
                try:
                    run.sections.append(module.run(args.quick, workdir, args.postgres_url, log))
                    print(console(run.sections[-1]), flush=True)
                except Exception as exc:  # report what could not run, and still write the rest
                    failed = True
                    run.skipped[title] = f"{type(exc).__name__}: {exc}"
                    log(f"{title} failed: {exc}")
        if args.only in (None, "dcb"):
            try:
                run.sections.append(dcb_bench.run(args.quick, args.postgres_url, log))
                print(console(run.sections[-1]), flush=True)
            except Exception as exc:  # report what could not run, and still write the rest
                failed = True
                run.skipped["DCB (issue 16)"] = f"{type(exc).__name__}: {exc}"
                log(f"DCB section failed: {exc}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    log("done")
    if args.write:
        text = markdown(run, PREAMBLE, CLOSING)
        if args.write.exists():  # the scale figures come from their own run: keep them
            old = args.write.read_text(encoding="utf-8")
            text = replicas_bench.keep_block(old, scale_report.keep_block(old, text))
            text = lifecycle_bench.keep_block(old, text)
        args.write.write_text(text, encoding="utf-8")
        log(f"wrote {args.write}")
    return 1 if failed else 0


def _stages(text: str) -> tuple[int, ...]:
    try:
        stages = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: numbers of events, comma-separated") from None
    if not stages or stages[0] != 0 or list(stages) != sorted(set(stages)):
        raise argparse.ArgumentTypeError(f"{text!r}: 0 first, then growing numbers of events")
    return stages


def _scale(args: argparse.Namespace) -> int:
    """``--only scale``: build the large stores, measure, and write the page's scale block."""
    settings = scale.ScaleSettings.quick() if args.quick else scale.ScaleSettings()
    if args.scale_stages:
        settings = replace(settings, stages=args.scale_stages)
    workdir = Path(tempfile.mkdtemp(prefix="conduit-scale-", dir=args.workdir))
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    try:
        result = scale.run(settings, workdir, args.postgres_url, log, database=args.scale_database)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(scale_report.console(result), flush=True)
    if args.write:
        block = "\n".join(scale_report.markdown(result))
        old = args.write.read_text(encoding="utf-8") if args.write.exists() else "# Benchmarks\n"
        args.write.write_text(scale_report.replace_block(old, block), encoding="utf-8")
        log(f"wrote {args.write}")
    return 1 if result.skipped else 0


def _replicas(args: argparse.Namespace) -> int:
    """``--only replicas``: a primary and a standby of the run's own; writes its block."""
    settings = Settings.quick() if args.quick else Settings()
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    workdir = Path(tempfile.gettempdir())
    command = "python -m benchmarks " + shlex.join(sys.argv[1:])
    run = Run(command.strip(), args.quick, workdir)
    section = replicas_bench.run(settings, log, quick=args.quick)
    print(console(section), flush=True)
    if args.write:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        produced = (
            f"Produced by `{run.command}` on {run.started:%Y-%m-%d %H:%M} UTC (load average "
            f"at the end {load}; the machine and versions as above"
            + (", a `--quick` smoke run: indicative only)." if args.quick else ").")
        )
        lines = section_markdown(section)
        block = "\n".join(
            [replicas_bench.START, *lines[:2], produced, "", *lines[2:], replicas_bench.END]
        )
        old = args.write.read_text(encoding="utf-8") if args.write.exists() else "# Benchmarks\n"
        args.write.write_text(replicas_bench.replace_block(old, block), encoding="utf-8")
        log(f"wrote {args.write}")
    return 0 if all(target.passed for target in section.targets) else 1


def _lifecycle(args: argparse.Namespace, argv: list[str] | None) -> int:
    """``--only lifecycle``: scavenging a large store while writers append (issue 17)."""
    settings = (
        lifecycle_bench.LifecycleSettings.quick()
        if args.quick
        else lifecycle_bench.LifecycleSettings()
    )
    workdir = Path(tempfile.mkdtemp(prefix="conduit-lifecycle-", dir=args.workdir))
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    try:
        result = lifecycle_bench.run(settings, workdir, args.postgres_url, log)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(lifecycle_bench.console(result), flush=True)
    if args.write:
        command = "python -m benchmarks " + shlex.join(sys.argv[1:] if argv is None else argv)
        block = lifecycle_bench.markdown(result, command)
        old = args.write.read_text(encoding="utf-8") if args.write.exists() else "# Benchmarks\n"
        args.write.write_text(lifecycle_bench.replace_block(old, block), encoding="utf-8")
        log(f"wrote {args.write}")
    return 1 if result.skipped else 0


if __name__ == "__main__":
    sys.exit(main())
