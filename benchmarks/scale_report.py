"""The scale benchmark's figures as text: the console summary and its block of docs/benchmarks.md.

The block sits between :data:`START` and :data:`END` at the end of the page,
so that a scale run can replace it without touching the other figures, and
the default run keeps it (see :func:`keep_block`).
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime

from benchmarks.scale import DATABASE, EngineRun, Metric, ScaleRun, ScaleSettings, metrics
from benchmarks.scale_build import PROBE_ONLY, RARE, RARE_EVERY, STREAM_EVENTS
from benchmarks.scale_measure import LATENCIES
from benchmarks.scale_plans import STEP, Work

__all__ = ["END", "START", "Verdict", "console", "keep_block", "markdown", "verdicts"]

START = "<!-- scale:start -->"
END = "<!-- scale:end -->"

ENGINES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}

DASH = "\u2013"
"""Between the lowest and the highest figure of the rounds."""

SCAN_SHARE = 0.1
"""An operation that reads this share of the log (or more) scans it."""

DEFAULT_VIEWS = ("overview", "streams", "stream", "log", "stats", "stats_fast")
"""What a page or a CLI command runs by default: it must not scan the log."""
LAGGING_VIEWS = ("overview_lagging", "stats_fast_lagging")


@dataclass(frozen=True)
class Verdict:
    """One target: what was measured at the largest stage, against what is required."""

    engine: str
    label: str
    measured: str
    required: str
    passed: bool
    operation: str
    """The operation whose plans explain a miss."""


def stage_name(events: int) -> str:
    """``10 M``, ``100 k``, ``0``."""
    if events >= 1_000_000:
        return f"{events / 1_000_000:g} M"
    if events >= 1_000:
        return f"{events / 1_000:g} k"
    return str(events)


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _spread(values: list[float], unit: str = "") -> str:
    mid = statistics.median(values)
    if len(values) == 1:
        return f"{_number(mid)}{unit}"
    return f"{_number(mid)}{unit} ({_number(min(values))}{DASH}{_number(max(values))})"


def ratios(engine: EngineRun, key: str, stage: int) -> list[float]:
    """Each round's large-store figure over the empty store's, measured in the same round."""
    large = engine.values.get((key, stage, "large"), [])
    empty = engine.values.get((key, stage, "empty"), [])
    return [a / b for a, b in zip(large, empty, strict=True) if b]


def _work_figure(engine: EngineRun, work: Work) -> float:
    if engine.engine == "sqlite":
        return float(work.steps)
    return float(work.rows.get("events", 0))


def verdicts(run: ScaleRun) -> list[Verdict]:
    """Every target of the issue, at each engine's largest stage."""
    found: list[Verdict] = []
    for engine in run.engines:
        name = ENGINES[engine.engine]
        last = engine.stages[-1]
        for metric in metrics(engine.engine, run.settings):
            operation = metric.key.split(".")[0]
            if metric.ratio is not None:
                measured = ratios(engine, metric.key, last)
                if not measured:
                    continue
                mid = statistics.median(measured)
                sign = "≥" if metric.higher_is_better else "≤"
                passed = mid >= metric.ratio if metric.higher_is_better else mid <= metric.ratio
                found.append(
                    Verdict(
                        name,
                        f"{metric.label}: {stage_name(last)} ÷ 0",
                        _spread(measured, "x"),
                        f"{sign} {metric.ratio:.2g}x",
                        passed,
                        operation,
                    )
                )
            if metric.limit_ms is not None:
                values = engine.values.get((metric.key, last, "large"), [])
                empty = engine.values.get((metric.key, engine.stages[0], "large"), [])
                if values:
                    found.append(
                        Verdict(
                            name,
                            f"{metric.label} at {stage_name(last)}",
                            f"{_spread(values, ' ms')}; at 0: {_spread(empty, ' ms')}",
                            f"< {metric.limit_ms:g} ms",
                            statistics.median(values) < metric.limit_ms,
                            operation,
                        )
                    )
        events = engine.events.get(last, 0)
        for key in (*DEFAULT_VIEWS, *LAGGING_VIEWS):
            work = engine.work.get((key, last))
            if work is None:
                continue
            label = next(x.label for x in LATENCIES if x.key == key)
            read = _work_figure(engine, work)
            # SQLite counts steps, not rows: counting rows costs about 2 steps a row.
            share = read / (2 if engine.engine == "sqlite" else 1) / max(1, events)
            unit = "VM steps" if engine.engine == "sqlite" else "rows of events read"
            found.append(
                Verdict(
                    name,
                    f"{label} does not scan the log",
                    f"{read:,.0f} {unit} (~{share:.1%} of the log)",
                    f"< {SCAN_SHARE:.0%} of the log",
                    share < SCAN_SHARE,
                    key,
                )
            )
    return found


def _table(header: list[str], lines: list[list[str]]) -> list[str]:
    align = ["---"] + ["---:"] * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    return out + ["| " + " | ".join(line) + " |" for line in lines]


def _figures(engine: EngineRun, found: list[Metric]) -> list[str]:
    stages = engine.stages
    header = ["Measurement", "Unit", *(stage_name(s) for s in stages)]
    header += [f"{stage_name(s)} ÷ 0" for s in stages]
    lines = []
    for metric in found:
        line = [metric.label, metric.unit]
        for stage in stages:
            values = engine.values.get((metric.key, stage, "large"), [])
            line.append(_spread(values) if values else "")
        for stage in stages:
            measured = ratios(engine, metric.key, stage)
            line.append(_spread(measured, "x") if measured else "")
        lines.append(line)
    return _table(header, lines)


def _cut_short(engine: EngineRun, settings: ScaleSettings) -> list[str]:
    """The operations whose timing stopped early, with the fewest calls a round per stage."""
    found = []
    for latency in LATENCIES:
        asked = getattr(settings, latency.samples)
        counts = []
        for stage in engine.stages:
            calls = engine.values.get((f"{latency.key}.calls", stage, "large"), [])
            if calls and min(calls) < asked:
                counts.append(f"{min(calls):.0f} at {stage_name(stage)}")
        if counts:
            found.append(f"{latency.label} ({', '.join(counts)})")
    if not found:
        return []
    return [
        f"Timed for at most {settings.budget:g} s a round on each store, so with fewer calls "
        f"than asked ({settings.samples} or {settings.pages}): " + "; ".join(found) + ".",
        "",
    ]


def _work_table(engine: EngineRun) -> list[str]:
    stages = engine.stages
    unit = "VM steps" if engine.engine == "sqlite" else "rows of `events` read"
    header = ["Operation (one call)", *(f"statements / {unit}, {stage_name(s)}" for s in stages)]
    labels = {x.key: x.label for x in LATENCIES}
    labels["log_page"] = "a page of 500 of `read_all(after=middle)`"
    lines = []
    for key, label in labels.items():
        cells = []
        for stage in stages:
            work = engine.work.get((key, stage))
            cells.append(
                "" if work is None else f"{work.statements} / {_work_figure(engine, work):,.0f}"
            )
        if any(cells):
            lines.append([label, *cells])
    return _table(header, lines)


def _plans(engine: EngineRun, operations: list[str]) -> list[str]:
    last = engine.stages[-1]
    out: list[str] = []
    labels = {x.key: x.label for x in LATENCIES}
    labels["log_page"] = "`read_all(after=middle)`, one page"
    for key in operations:
        work = engine.work.get((key, last))
        label = labels.get(key, key)
        if work is None:
            out += [f"- {label}: a write, no read plan to show.", ""]
            continue
        out += [f"{label}, at {stage_name(last)} events:", "", "```text"]
        for sql, plan in work.plans.items():
            out += [sql, plan, ""]
        out[-1:] = ["```", ""]
    return out


def description(settings: ScaleSettings) -> list[str]:
    """What the scale benchmark does, as the block's opening paragraphs and notes."""
    stages = ", ".join(stage_name(s) for s in settings.stages)
    probe = settings.probe_streams * STREAM_EVENTS
    return [
        "`python -m benchmarks --only scale` (not part of the default run) builds one store on "
        f"SQLite and one on PostgreSQL, in stages of {stages} events, and measures each stage "
        "against an empty store in the same rounds. `--quick` does the same with 100,000 "
        "events, tiny timings and two rounds: tests/test_benchmark_scale.py runs it so that the "
        "code cannot "
        "rot (no timing is asserted). `--workdir` names where the SQLite files go (10 M events "
        "take a few GB); `--postgres-url` the server, on which the run creates the database "
        f"`{DATABASE}` and drops it afterwards.",
        "",
        "- **The data**: streams of 100 events written with `push_many` (one batch per stream), "
        "their ids `person-…`, `order-…` or `account-…` and a UUID; 9 event names, one event "
        f"in {RARE_EVERY:,} named `{RARE}` (plus one in the probe streams: its matches grow "
        "with the log, ~1 at 0 and ~100 at 10 M, so its latency grows with the answer); the "
        f"last event of every third probe stream named `{PROBE_ONLY}`, a name the bulk never "
        "writes (the same matches at every stage: the cost of finding a rare name, the "
        "answer held constant); metadata with a "
        "`correlation_id` on one event in ten; ~120 bytes of JSON data; recorded times from a "
        "virtual clock that starts hours before the run, 1 ms apart, so that `read(since=...)` "
        "can cut a stream in half.",
        "- **The build**: SQLite in one process (SQLite serializes writers) on a store opened "
        f"with `synchronous=normal`; PostgreSQL in {settings.build_processes} processes, each "
        "with `pool_size=1`. After each stage, PostgreSQL gets `VACUUM ANALYZE` of `events` and "
        "`streams` and a `CHECKPOINT` (what autovacuum would have done by then); SQLite a "
        "`wal_checkpoint(TRUNCATE)`. Neither is timed as building.",
        f"- **The empty store** (the `0` of every ratio): a fresh store holding only the "
        f"{settings.probe_streams} probe streams ({probe:,} events), made again at each stage, "
        "plus what that stage's append measurements add to it. The large store starts with the "
        "same probe streams, so at stage 0 the two are alike and their ratio (the `0 ÷ 0` "
        "column) shows the noise of the machine.",
        f"- **Rounds**: {settings.rounds} per stage; in each, every figure is measured on the "
        "large store and on the empty one, one after the other, which one goes first "
        "alternating from figure to figure and round to round. Cells are the median over the "
        f"rounds (lowest{DASH}highest in brackets); a ratio is the median of the rounds' ratios.",
        "- **Stores measured** are opened with their defaults (SQLite `synchronous=full`, "
        "PostgreSQL `pool_size=10`) and hold one projection checkpoint at the head (a "
        "projection that keeps up): the rows *a projection at checkpoint 0* move it back to 0 "
        "(a new or rebuilt projection), which the overview and `stats` count the lag of.",
        f"- **Latencies**: {settings.samples} calls a round for the API's reads, "
        f"{settings.pages} for each page, {settings.commands} for in-process commands and the "
        f"lagging-projection rows, {settings.processes} for the subprocess; each on a stream "
        "chosen at random (after one untimed call), stopping early (after 5 calls at least) "
        f"once they took {settings.budget:g} s; nearest-rank p50 and p99. Pages are "
        "served by uvicorn (`conduit.web.server.BackgroundServer` over "
        "`conduit.web.create_app(store)`, in a thread of the benchmark's process, on "
        "127.0.0.1) and fetched over one kept-alive HTTP connection (`http.client`), the "
        "whole page read; "
        "`conduit stats` through typer's `CliRunner` (opening the store included) and as a "
        "subprocess (Python's start-up included: see *Start-up*).",
        f"- **Appends**: `push` of one event, no expected version, to random existing streams, "
        f"for {settings.append_seconds:g} s; each writer is a process with its own store "
        "(PostgreSQL: `pool_size=1`) and its own share of the streams, all starting at a "
        "barrier; the rate is all their events over the time from the first start to the last "
        "stop.",
        f"- **`read_all(after=middle)`**: the log from the position of the middle stream's last "
        f"event, iterated for {settings.log_seconds:g} s (again from the middle when it ends). "
        "The issue's 3x rule for latencies is applied to this rate as *at least a third*.",
        "- **Size**: the SQLite file and its WAL after a checkpoint; PostgreSQL's "
        "`pg_total_relation_size` (indexes and TOAST included) summed over the schema's tables; "
        "divided by the events the store holds.",
        "- **What one call asks of the engine**: the statements a call runs are recorded in "
        "the process (SQLite's `_query`, PostgreSQL's pooled connection), then run again under "
        "the planner on the large store: SQLite counts its virtual-machine steps (a progress "
        f"handler, in units of {STEP}), PostgreSQL's `EXPLAIN ANALYZE` the rows its scan nodes "
        "read from `events` (kept and filtered out, every loop). A call whose work grows with "
        f"the log scans it: the targets flag a page or command that reads {SCAN_SHARE:.0%} of "
        "the log or more (on SQLite, counting rows costs about two steps a row).",
    ]


def markdown(run: ScaleRun) -> list[str]:
    """The block of docs/benchmarks.md, markers included."""
    notes = description(run.settings)
    stamp = datetime.now(UTC)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    out = [
        START,
        "## Scale (issue 12)",
        "",
        *notes,
        "",
        f"This run: {run.seconds / 60:.1f} minutes in all, finished {stamp:%Y-%m-%d %H:%M} UTC "
        f"(load average at the end: {load})"
        + (" — a `--quick` smoke run: indicative only." if _is_quick(run) else "."),
        "",
        "### Building the store",
        "",
    ]
    lines = []
    for engine in run.engines:
        for build in engine.builds:
            if build.events:
                lines.append(
                    [
                        ENGINES[engine.engine],
                        f"to {stage_name(build.stage)}" if build.stage else "the probe streams",
                        f"{build.events:,}",
                        f"{build.seconds:.0f}",
                        f"{build.events / build.seconds:,.0f}" if build.seconds else "",
                        f"{build.maintenance:.0f}",
                    ]
                )
    header = [
        "Engine",
        "Stage",
        "Events written",
        "Seconds",
        "Events/s",
        "Then VACUUM/checkpoint (s)",
    ]
    out += [*_table(header, lines), ""]
    every = verdicts(run)
    for engine in run.engines:
        name = ENGINES[engine.engine]
        out += [f"### {name}", "", *_figures(engine, metrics(engine.engine, run.settings)), ""]
        out += _cut_short(engine, run.settings)
        mine = [v for v in every if v.engine == name]
        out += [
            f"#### {name}: targets at {stage_name(engine.stages[-1])} events",
            "",
            *_table(
                ["Target", "Measured", "Required", "Result"],
                [
                    [v.label, v.measured, v.required, "PASS" if v.passed else "**MISS**"]
                    for v in mine
                ],
            ),
            "",
            f"#### {name}: what one call asks of the engine",
            "",
            *_work_table(engine),
            "",
        ]
        missed = list(dict.fromkeys(v.operation for v in mine if not v.passed))
        missed = ["log_page" if key == "log_rate" else key for key in missed]
        if missed:
            out += [f"#### {name}: query plans of the misses", "", *_plans(engine, missed)]
        facts = "; ".join(f"{k}: {v}" for k, v in engine.facts.items())
        minutes = f"{engine.seconds / 60:.1f} minutes"
        out += [f"{name} took {minutes}" + (f" ({facts})." if facts else "."), ""]
    for title, reason in run.skipped.items():
        out += [f"### {title}", "", f"Not run: {reason}", ""]
    out += [
        "### Start-up",
        "",
        *_table(
            ["Command", f"best of {run.settings.startup_runs} (ms)"],
            [[f"`{label}`", f"{seconds * 1000:.0f}"] for label, seconds in run.startup.items()],
        ),
        "",
        END,
    ]
    return out


def _is_quick(run: ScaleRun) -> bool:
    return max(run.settings.stages) < 1_000_000


def console(run: ScaleRun) -> str:
    """A plain-text summary for the terminal: every target and the total time."""
    lines = [f"== Scale, {run.seconds / 60:.1f} minutes ==", ""]
    for verdict in verdicts(run):
        result = "PASS" if verdict.passed else "MISS"
        lines.append(
            f"  {result:<5} {verdict.engine}: {verdict.label}: {verdict.measured} "
            f"(target {verdict.required})"
        )
    for title, reason in run.skipped.items():
        lines.append(f"  SKIP  {title}: {reason}")
    return "\n".join(lines)


def keep_block(old: str, new: str) -> str:
    """``new`` with the scale block of ``old`` (if any) at its end, or in its place."""
    block = _block(old)
    if block is None:
        return new
    return replace_block(new, block)


def replace_block(text: str, block: str) -> str:
    """``text`` with its scale block replaced by ``block`` (appended if it has none)."""
    start, end = text.find(START), text.find(END)
    if start == -1 or end == -1:
        return text.rstrip() + "\n\n" + block.strip() + "\n"
    return text[:start] + block.strip() + text[end + len(END) :]


def _block(text: str) -> str | None:
    start, end = text.find(START), text.find(END)
    if start == -1 or end == -1:
        return None
    return text[start : end + len(END)]
