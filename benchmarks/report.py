"""Turn one benchmark run's measurements into results.json, RESULTS.md and a plot.

Nothing here is typed in by hand: every number comes from the results dict that
run.py measured, so RESULTS.md always shows what the run printed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from common import BENCH_DIR

RESULTS_MD = BENCH_DIR / "RESULTS.md"
RESULTS_JSON = BENCH_DIR / "results.json"
RESULTS_PNG = BENCH_DIR / "results.png"

# (ratio name, upper bound, what the target means), from the issues.
TARGETS: list[tuple[str, float, str]] = [
    (
        "restate / limit (aggregate floor)",
        3.0,
        "14 months within 3x the floor that matters (the restated mart from its deduplicated upstream)",
    ),
    ("restate / SQLMesh", 1.0, "faster than SQLMesh despite isolation, checks, diff and archive"),
    ("restate / dbt microbatch", 1.0, "faster than microbatch despite isolation and checks"),
    ("restate peak RSS (GB)", 1.0, "peak memory of the 14-month restatement at most 1 GB"),
    ("one day (s)", 2.0, "a one-day restatement within 2 s end to end"),
    ("one day / fourteen months", 0.02, "one day costs at most 2% of 14 months"),
    ("rerun / full", 0.55, "rerun after a kill half way costs at most 55% of a full run"),
    (
        "worst loaded / idle freshness",
        1.5,
        "every load overlapping a restatement at most 1.5x its idle latency",
    ),
    # The same goals in a warm process (`restate worker`: dbt, Soda and the parsed
    # project kept between restatements), where restatements run in a team deployment.
    ("warm: restate / limit (aggregate floor)", 3.0, "warm worker: 14 months within 3x the floor"),
    ("warm: restate / SQLMesh", 1.0, "warm worker: faster than SQLMesh"),
    ("warm: one day (s)", 2.0, "warm worker: a one-day restatement within 2 s end to end"),
    ("warm: one day / fourteen months", 0.02, "warm worker: one day costs at most 2% of 14 months"),
    ("warm: rerun / full", 0.55, "warm worker: rerun after a kill half way at most 55% of a full run"),
    ("warm: 14 months at 1M (s)", 3.0, "at 1M raw rows, the whole lifecycle (warm worker) within 3 s"),
]


def results_paths(events: int) -> tuple[Path, Path, Path]:
    """RESULTS.md, results.json and results.png for the default scale (1M raw rows);
    RESULTS-<scale>.md and so on beside them for another (e.g. RESULTS-10M.md)."""
    if events == 1_000_000:
        return RESULTS_MD, RESULTS_JSON, RESULTS_PNG
    tag = f"{events // 1_000_000}M" if events % 1_000_000 == 0 else f"{events:_}"
    return (
        BENCH_DIR / f"RESULTS-{tag}.md",
        BENCH_DIR / f"results-{tag}.json",
        BENCH_DIR / f"results-{tag}.png",
    )


def _get(results: dict[str, Any], *path: str) -> Any:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def compute_ratios(r: dict[str, Any]) -> dict[str, float | None]:
    """The ratios the issue asks for, plus each tool against the floor of its own engine."""
    full = _get(r, "restate", "full", "median_s")
    limit_raw = _get(r, "limit", "project", "raw", "median_s")
    limit_agg = _get(r, "limit", "project", "agg", "median_s")
    mb = _get(r, "microbatch", "median_s")
    sm = _get(r, "sqlmesh", "median_s")
    warm_full = _get(r, "restate_warm", "full", "median_s")
    return {
        "restate / limit (raw floor)": _ratio(full, limit_raw),
        "restate / limit (aggregate floor)": _ratio(full, limit_agg),
        "restate / dbt microbatch": _ratio(full, mb),
        "restate / SQLMesh": _ratio(full, sm),
        "dbt microbatch / limit (raw floor)": _ratio(mb, limit_raw),
        "SQLMesh / limit (raw floor, SQLMesh's DuckDB)": _ratio(
            sm, _get(r, "limit", "sqlmesh", "raw", "median_s")
        ),
        "SQLMesh / limit (aggregate floor, SQLMesh's DuckDB)": _ratio(
            sm, _get(r, "limit", "sqlmesh", "agg", "median_s")
        ),
        "restate peak RSS (GB)": _ratio(_get(r, "restate", "full", "peak_rss_mb"), 1024.0),
        "one day (s)": _get(r, "restate", "day", "median_s"),
        "one day / fourteen months": _ratio(_get(r, "restate", "day", "median_s"), full),
        "one account / fourteen months": _ratio(_get(r, "restate", "account", "median_s"), full),
        "rerun / full": _ratio(_get(r, "resume", "median_s"), full),
        "loaded / idle freshness": _ratio(
            _get(r, "freshness", "loaded", "median_s"), _get(r, "freshness", "idle", "median_s")
        ),
        "worst loaded / idle freshness": _ratio(
            _get(r, "freshness", "loaded", "max_s"), _get(r, "freshness", "idle", "median_s")
        ),
        "warm: restate / limit (aggregate floor)": _ratio(warm_full, limit_agg),
        "warm: restate / SQLMesh": _ratio(warm_full, sm),
        "warm: one day (s)": _get(r, "restate_warm", "day", "median_s"),
        "warm: one day / fourteen months": _ratio(_get(r, "restate_warm", "day", "median_s"), warm_full),
        "warm: rerun / full": _ratio(_get(r, "resume_warm", "median_s"), warm_full),
        # A goal at the default scale only (n/a at another).
        "warm: 14 months at 1M (s)": warm_full if _get(r, "scale", "events") == 1_000_000 else None,
    }


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _tool_rows(r: dict[str, Any]) -> list[tuple[str, str, dict[str, Any] | None, str]]:
    """(tool, engine, stats, what it does) for the time-per-tool table and the plot."""
    pdb = _get(r, "limit", "project", "duckdb") or "?"
    sdb = _get(r, "limit", "sqlmesh", "duckdb") or "?"
    return [
        (
            "limit: raw -> mart, one statement",
            f"DuckDB {pdb}",
            _get(r, "limit", "project", "raw"),
            "dedupe + aggregate from the raw Parquet into a table",
        ),
        (
            "limit: deduped -> mart, one statement",
            f"DuckDB {pdb}",
            _get(r, "limit", "project", "agg"),
            "aggregate int_deduped_events into a table",
        ),
        (
            "restate, 14 months",
            f"DuckDB {pdb}",
            _get(r, "restate", "full"),
            "plan, 14 chunks into restate_<id>, Soda checks, diff, atomic promotion with archive",
        ),
        ("restate, one day", f"DuckDB {pdb}", _get(r, "restate", "day"), "same lifecycle, 1 chunk"),
        (
            "restate, one account x 14 months",
            f"DuckDB {pdb}",
            _get(r, "restate", "account"),
            "same lifecycle, 14 chunks filtered to one account",
        ),
        (
            "restate, rerun after kill at half",
            f"DuckDB {pdb}",
            _get(r, "resume"),
            "finished chunks reused, the rest recomputed, then checks, diff, promotion"
            + _killed_at(_get(r, "resume")),
        ),
        (
            "restate, 14 months, warm worker",
            f"DuckDB {pdb}",
            _get(r, "restate_warm", "full"),
            "the same lifecycle in a process warmed as `restate worker` warms itself",
        ),
        (
            "restate, one day, warm worker",
            f"DuckDB {pdb}",
            _get(r, "restate_warm", "day"),
            "same, 1 chunk",
        ),
        (
            "restate, rerun after kill at half, warm worker",
            f"DuckDB {pdb}",
            _get(r, "resume_warm"),
            "the killed run and the rerun each in a warmed process" + _killed_at(_get(r, "resume_warm")),
        ),
        (
            "dbt microbatch, 14 months",
            f"DuckDB {pdb}",
            _get(r, "microbatch"),
            "one delete+insert per day into prod; no isolation, no checks, no archive",
        ),
        (
            "SQLMesh restate, 14 months",
            f"DuckDB {sdb}",
            _get(r, "sqlmesh"),
            "plan --restate-model: one insert-overwrite batch for the range; no checks, no archive",
        ),
        (
            "limit: raw -> mart (SQLMesh's DuckDB)",
            f"DuckDB {sdb}",
            _get(r, "limit", "sqlmesh", "raw"),
            "the floor on SQLMesh's engine version",
        ),
        (
            "limit: deduped -> mart (SQLMesh's DuckDB)",
            f"DuckDB {sdb}",
            _get(r, "limit", "sqlmesh", "agg"),
            "the floor on SQLMesh's engine version",
        ),
    ]


def _target_lines(ratios: dict[str, float | None]) -> list[str]:
    lines = ["| target | measured | met? |", "|---|---|---|"]
    for name, bound, meaning in TARGETS:
        value = ratios.get(name)
        met = "n/a" if value is None else ("yes" if value <= bound else "**no**")
        lines.append(f"| {meaning} (`{name}` <= {bound:g}) | {_fmt(value, 3)} | {met} |")
    return lines


def _parts_lines(r: dict[str, Any]) -> list[str]:
    lines = [
        "| restatement | total s | orchestration | dbt (overhead) | SQL | checks (Soda) | promotion "
        "| peak RSS MB after plan / chunks / checks / promotion |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = [(scope, _get(r, "restate", scope)) for scope in ("full", "day", "account")]
    rows += [("rerun", _get(r, "resume"))]
    rows += [(f"{scope}, warm worker", _get(r, "restate_warm", scope)) for scope in ("full", "day")]
    rows += [("rerun, warm worker", _get(r, "resume_warm"))]
    for scope, stats in rows:
        if not stats:
            continue
        p = stats["parts"]
        lines.append(
            f"| {scope} | {_fmt(stats['median_s'], 1)} | {_fmt(p['orchestration'], 1)} | {_fmt(p['dbt'], 1)} "
            f"| {_fmt(p['sql'], 1)} | {_fmt(p['checks'], 1)} | {_fmt(p['promotion'], 1)} "
            f"| {_peaks(stats.get('peak_rss_mb_after') or {})} |"
        )
    return lines


def _peaks(after: dict[str, float]) -> str:
    return " / ".join(_fmt(after.get(step), 0) for step in ("plan", "chunks", "checks", "promotion"))


def render_markdown(r: dict[str, Any], ratios: dict[str, float | None], png: str = "results.png") -> str:
    m, ds, sc = r["machine"], r["dataset"], r["scale"]
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`benchmarks/run.py`) from the run it just made; do not edit by hand.",
        f"Run at {r['started_at']} UTC, {r['elapsed_s'] / 60:.1f} minutes end to end.",
        "",
        "## Machine and versions",
        "",
        f"- CPU: {m['cpu']} ({m['cores']} cores), RAM {m['ram_gb']} GB, {m['os']}",
        "- Note: this machine may be shared with other work, so timings are noisy;",
        "  each figure is the median of the runs listed in results.json.",
        "- " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()),
        "",
        "## Data",
        "",
        f"- BENCH_EVENTS={sc['events']:,}: {ds['rows_landed']:,} raw rows landed "
        f"({ds['landing_mb']} MB Parquet in {ds['files']} daily files), {ds['period_start']} .. "
        f"{ds['period_end']} ({ds['days']} days, 14 months), {sc['accounts']} accounts;",
        f"  fct_revenue_daily has {_get(r, 'limit', 'project', 'raw', 'rows'):,} rows; "
        f"warehouse {ds['warehouse_mb']} MB.",
        f"- Runs per figure: BENCH_RUNS={sc['runs']} for the fast steps (floors, SQLMesh, one-day "
        f"restatement), BENCH_SLOW_RUNS={sc['slow_runs']} for the slow ones (14-month and one-account "
        "restatements, microbatch, resume); freshness: 3 slices after one warm-up slice, idle and loaded.",
        "- Correctness: every tool's output table was compared with the limit query's table "
        "(all rows, or the restated day / account); all equal, otherwise the run would have failed.",
        "",
        "## Time per tool (seconds, median)",
        "",
        "| tool | engine | median s | runs | peak RSS MB | work done |",
        "|---|---|---|---|---|---|",
    ]
    for name, engine, stats, does in _tool_rows(r):
        if stats is None:
            continue
        runs = ", ".join(_fmt(x, 1) for x in stats.get("runs_s", []))
        lines.append(
            f"| {name} | {engine} | {_fmt(stats['median_s'], 2)} | {runs} | "
            f"{_fmt(stats.get('peak_rss_mb'), 0)} | {does} |"
        )
    for name, reason in r.get("skipped", {}).items():
        flat = " ".join(str(reason).split()).replace("|", "/")
        lines.append(f"| {name} | - | skipped | - | - | {flat} |")
    lines += [
        "",
        "Times are measured inside each child process, after its imports (restate, dbt and SQLMesh",
        "alike; import times are in results.json). restate's figure covers plan -> recompute -> validate",
        "-> diff -> promote against a Prefect server that was already running, as in production.",
        "Peak RSS is the child's ru_maxrss (wait4); the Prefect server's own memory is not included.",
        "",
        "## Ratios",
        "",
        "| ratio | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {_fmt(v, 3)} |" for k, v in ratios.items()]
    lines += ["", "## Targets", "", *_target_lines(ratios), *_miss_lines(r, ratios)]
    lines += ["", "## Where restate's time goes", ""]
    lines += _parts_lines(r)
    lines += _where_time_goes(r)
    lines += _validation_lines(r)
    lines += _freshness_lines(r)
    lines += ["", f"![time per tool]({png})", ""]
    return "\n".join(lines)


def _missed(ratios: dict[str, float | None], name: str) -> bool:
    bound = next(b for n, b, _ in TARGETS if n == name)
    value = ratios.get(name)
    return value is not None and value > bound


def _miss_lines(r: dict[str, Any], ratios: dict[str, float | None]) -> list[str]:
    """Each missed target explained from this run's own split of the warm lifecycle."""
    full, day = _get(r, "restate_warm", "full"), _get(r, "restate_warm", "day")
    rerun = _get(r, "resume_warm")
    floor, sqlmesh = _get(r, "limit", "project", "agg", "median_s"), _get(r, "sqlmesh", "median_s")
    if not full or not day or not rerun or not floor:
        return []
    fp, dp, rp = full["parts"], day["parts"], rerun["parts"]

    def fixed(parts: dict[str, float]) -> str:
        return (
            f"checks {_fmt(parts['checks'], 1)} s, promotion with archive {_fmt(parts['promotion'], 1)} s, "
            f"dbt's own cost {_fmt(parts['dbt'], 1)} s, orchestration {_fmt(parts['orchestration'], 1)} s"
        )

    lines = ["", "Why the missed targets are missed, from this run's split of the warm lifecycle:", ""]
    against_peers = (
        "warm: restate / limit (aggregate floor)",
        "warm: restate / SQLMesh",
        "warm: 14 months at 1M (s)",
    )
    if any(_missed(ratios, name) for name in against_peers):
        peers = f" and SQLMesh's {_fmt(sqlmesh)} s" if sqlmesh else ""
        lines.append(
            f"- 14 months, {_fmt(full['median_s'], 1)} s against the floor's {_fmt(floor)} s{peers}: its SQL "
            f"(14 chunks into the isolated schema, and the diff) is {_fmt(fp['sql'], 1)} s, "
            f"{_fmt(fp['sql'] / floor, 1)}x the floor, which writes one table in one statement; the rest is "
            f"work neither the floor nor SQLMesh does: {fixed(fp)} (plan storage, the meta-schema "
            "rows per chunk, notices)."
        )
    if _missed(ratios, "warm: one day (s)") or _missed(ratios, "warm: one day / fourteen months"):
        lines.append(
            f"- one day, {_fmt(day['median_s'], 1)} s ({_fmt(day['median_s'] / full['median_s'], 2)} of "
            f"14 months): its SQL is {_fmt(dp['sql'], 1)} s; the rest is the same fixed work as 14 months' "
            f"({fixed(dp)}), so it cannot come near 2% of 14 months "
            f"({_fmt(0.02 * full['median_s'])} s) while a lifecycle has checks, a promotion and a dbt call."
        )
    if _missed(ratios, "warm: rerun / full"):
        lines.append(
            f"- rerun after a kill at {rerun.get('killed_after_chunks')}/{rerun.get('chunks')} chunks, "
            f"{_fmt(rerun['median_s'], 1)} s: it skips the finished chunks (SQL {_fmt(rp['sql'], 1)} s "
            f"against {_fmt(fp['sql'], 1)} s) and pays the fixed work again ({fixed(rp)}; dbt "
            "compiles the chunk SQL again in its new process)."
        )
    cold = _get(r, "restate", "day")
    if cold and _missed(ratios, "one day (s)"):
        lines.append(
            f"- in a fresh process (no worker) one day is {_fmt(cold['median_s'], 1)} s, of which dbt's own "
            f"cost {_fmt(cold['parts']['dbt'], 1)} s: building dbt's classes and parsing the project in a "
            "new process, which a `restate worker` pays once at its start."
        )
    return lines if len(lines) > 3 else []


def _killed_at(resume: dict[str, Any] | None) -> str:
    if not resume or not resume.get("chunks"):
        return ""
    return f" (killed after {resume.get('killed_after_chunks')}/{resume['chunks']} chunks)"


def _where_time_goes(r: dict[str, Any]) -> list[str]:
    probe = r.get("dbt_probe") or {}
    full = _get(r, "restate", "full") or {}
    counts = full.get("counts", {})
    lines = [
        "",
        "- orchestration = everything outside dbt, SQL, checks and promotion: Prefect task",
        "  bookkeeping (a task per chunk in a fresh process), the meta-schema updates per chunk,",
        "  plan storage, notices.",
        "- dbt = wall time of each in-process dbt invocation minus its models' execution time",
        f"  ({counts.get('dbt_invocations', '?')} invocations in the 14-month run: one run for the",
        "  first chunk, with the restatement's parse, one compile whose SQL every later chunk",
        "  runs, one for the follow-on view), plus planning's parse of the project (dbt's",
        "  partial parse). The",
        "  restatement's parse is the project parsed with a probe schema and retargeted",
        "  (docs/deployment.md): in a fresh process after the fix was deployed that is a full",
        "  parse, as before; in a warm worker, nothing.",
        "- warm worker = the same lifecycle in a process that first ran restate.actions.warm_up,",
        "  as `restate worker` does at start (untimed, like the imports; its seconds are in",
        "  results.json), and ran the restatement as the worker's task does: its chunks on one",
        "  session, consecutive chunks as one statement per model (write windows, RESTATE_WRITE_WINDOW_S).",
        "- SQL = the models' execution time inside dbt plus the later chunks' compiled SQL.",
        "- rerun: the run is killed once half its chunks are reported done; with write windows",
        "  that is at the end of a window, so the count killed at is in the table.",
    ]
    if probe:
        lines += [
            f"- Profile of one chunk's dbt call (same process, warm): with new `--vars` "
            f"{_fmt(probe.get('new_vars_s'), 2)} s and {_fmt(probe.get('new_vars_again_s'), 2)} s; "
            f"with the same `--vars` {_fmt(probe.get('same_vars_s'), 2)} s and "
            f"{_fmt(probe.get('same_vars_again_s'), 2)} s.",
        ]
        # Two calls each way: one pair alone is within the machine's noise.
        new = (probe.get("new_vars_s") or 0.0) + (probe.get("new_vars_again_s") or 0.0)
        same = (probe.get("same_vars_s") or 0.0) + (probe.get("same_vars_again_s") or 0.0)
        if same and new > 2 * same:
            lines += [
                "  Chunk bounds passed as `--vars` defeat dbt's partial parsing, so every chunk",
                "  re-parses the whole project ('Unable to do partial parsing because config vars ...').",
            ]
        else:
            lines += [
                "  New chunk bounds no longer force a full re-parse; what remains per chunk is dbt's",
                "  fixed cost per invocation, plus one full parse per process (plan) and the Soda checks.",
            ]
    return lines


def _validation_lines(r: dict[str, Any]) -> list[str]:
    lines = []
    for scope in ("full", "day", "account"):
        passed = _get(r, "restate", scope, "validation_passed")
        if passed is False:
            lines.append(
                f"- The {scope} restatement's validation failed and was overridden (audited) so the "
                "lifecycle could be timed to promotion."
            )
    if lines:
        lines.append(
            "  Expected for one account: the finance checks compare what promotion would publish"
            " (that account restated, every other account still as reported with the bug) with the"
            " finance totals, so they fail until all accounts are restated."
        )
    return lines


def _freshness_lines(r: dict[str, Any]) -> list[str]:
    f = r.get("freshness")
    if not f:
        return []
    idle, loaded = f["idle"], f["loaded"]
    return [
        "",
        "## Freshness",
        "",
        "Latency from a 15-minute slice landing to the incremental flow finishing (each load"
        " after the process's warm-up slice; none discarded):",
        f"idle {', '.join(_fmt(x, 1) for x in idle['runs_s'])} s (median {_fmt(idle['median_s'], 1)},"
        f" max {_fmt(idle.get('max_s'), 1)});",
        f"loads started once the 14-month restatement was writing: "
        f"{', '.join(_fmt(x, 1) for x in loaded['runs_s'])} s, of which overlapping it "
        f"{loaded.get('overlapped')} ({loaded.get('loads_during_restatement')} loads; median "
        f"{_fmt(loaded['median_s'], 1)}, max {_fmt(loaded.get('max_s'), 1)} over those);"
        f" rows per slice {idle['rows_per_slice']}.",
        f"The restatement took {_fmt(loaded.get('background_restatement_s'), 1)} s and was still "
        f"running when the last load finished: {loaded['restatement_still_running_at_end']}; "
        f"loads retried while it held the DuckDB file: {loaded.get('load_retries', 'n/a')}.",
        *_wait_lines(loaded),
    ]


def _wait_lines(loaded: dict[str, Any]) -> list[str]:
    """Each loaded load's wait for the DuckDB file (one writer per file) and the
    restatement steps it waited on."""
    if "waited_s" not in loaded:
        return []
    waits = [
        f"{_fmt(w, 2)} s" + (f" ({'; '.join(on)})" if on else "")
        for w, on in zip(loaded["waited_s"], loaded["waited_on"], strict=True)
    ]
    return [
        f"Each load's wait for the file the restatement held, and on which of its steps: {', '.join(waits)}."
    ]


def plot(r: dict[str, Any], path: Path) -> None:
    """Horizontal bars: median seconds per tool (log scale, the floors are sub-second)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(name, stats["median_s"]) for name, _, stats, _ in _tool_rows(r) if stats]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.2))
    ax.barh([n for n, _ in rows][::-1], [v for _, v in rows][::-1], color="#4477aa")
    ax.set_xscale("log")
    ax.set_xlabel("seconds (median, log scale)")
    ax.set_title(f"fct_revenue_daily restatement, {r['dataset']['rows_landed']:,} raw rows, 14 months")
    for i, (_, v) in enumerate(rows[::-1]):
        ax.text(v, i, f" {v:.2f}s", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(results: dict[str, Any]) -> dict[str, float | None]:
    ratios = compute_ratios(results)
    results["ratios"] = ratios
    md, js, png = results_paths(int(results["scale"]["events"]))
    js.write_text(json.dumps(results, indent=2, default=str) + "\n")
    md.write_text(render_markdown(results, ratios, png.name))
    plot(results, png)
    return ratios


if __name__ == "__main__":
    # Re-render RESULTS.md and the plot from a results.json a run wrote (no new numbers).
    import sys

    data = json.loads(Path(sys.argv[1] if len(sys.argv) > 1 else RESULTS_JSON).read_text())
    data.pop("ratios", None)
    write_reports(data)
