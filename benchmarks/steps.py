"""The benchmark's measurements, one function per step; each runs its work in child processes."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    BENCH_DIR,
    PROJECT_ROOT,
    WORK,
    ChildError,
    ChildRun,
    Scale,
    base_env,
    fresh_copy,
    median,
    parse_progress,
    py_child,
    run_child,
    say,
)

RESTATE_BIN = PROJECT_ROOT / ".venv" / "bin" / "restate"
PREFECT_BIN = PROJECT_ROOT / ".venv" / "bin" / "prefect"
SQLMESH_VENV = WORK / "sqlmesh-venv"
SQLMESH_PY = SQLMESH_VENV / "bin" / "python"
PREFECT_PORT = 4299
T0 = "2026-10-31 18:00:00"  # freshness: the landing is cut here, slices follow
FRESH_SLICES = 4  # the first one warms the process up and is not counted
ONE_DAY = "2026-06-15"
ONE_ACCOUNT = "acct_000007"


@dataclass(frozen=True)
class DataSet:
    """Where the generated data and the buggy production baselines live."""

    landing: Path
    finance: Path
    baseline: Path  # RESTATE_DATA_DIR with production built by the v1 logic
    deduped: Path  # production int_deduped_events as Parquet (input of every tool)
    fresh_landing: Path
    fresh_baseline: Path
    fresh_slices: Path
    start: str
    end: str
    info: dict[str, Any]

    @property
    def raw_glob(self) -> str:
        return f"{self.landing}/events/*/*.parquet"


def restate_env(data_dir: Path, landing: Path, finance: Path, **extra: str) -> dict[str, str]:
    return base_env(
        {
            "RESTATE_DATA_DIR": str(data_dir),
            "RESTATE_LANDING_URI": str(landing),
            "RESTATE_FINANCE_URI": str(finance),
            "PREFECT_API_URL": f"http://127.0.0.1:{PREFECT_PORT}/api",
            # Each run's Prefect task results in its own folder, not the shared PREFECT_HOME:
            # a second copy of the same warehouse must never read the first copy's.
            "PREFECT_LOCAL_STORAGE_PATH": str(data_dir / "state" / "prefect_results"),
            **extra,
        }
    )


@contextmanager
def prefect_server() -> Iterator[dict[str, Any]]:
    """A Prefect server for the whole benchmark, as in production (started once, not per run).

    Without it every restate child would start Prefect's temporary server (~20 s).
    """
    log = (WORK / "logs" / "prefect-server.log").open("w")
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(PREFECT_BIN), "server", "start", "--host", "127.0.0.1", "--port", str(PREFECT_PORT)],
        env=base_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    info: dict[str, Any] = {"pid": proc.pid}
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{PREFECT_PORT}/api/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("prefect server exited; see work/logs/prefect-server.log") from None
                time.sleep(1)
        else:
            raise RuntimeError("prefect server did not become healthy in 180 s")
        info["startup_s"] = time.monotonic() - started
        yield info
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _dataset(data: Path, start: str, end: str, info: dict[str, Any]) -> DataSet:
    return DataSet(
        landing=data / "landing",
        finance=data / "finance",
        baseline=data / "baseline",
        deduped=data / "deduped.parquet",
        fresh_landing=data / "fresh_landing",
        fresh_baseline=data / "fresh_baseline",
        fresh_slices=data / "fresh_slices",
        start=start,
        end=end,
        info=info,
    )


def prepare_data(scale: Scale) -> DataSet:
    """Generate 14 months once; build production with the buggy logic; stage freshness slices."""
    data = WORK / "data"
    if data.exists():
        shutil.rmtree(data)
    ds = _dataset(data, "", "", {})
    gen_args = [
        "--months",
        str(scale.months),
        "--accounts",
        str(scale.accounts),
        "--events-per-day",
        str(scale.events_per_day),
    ]
    gen = run_child(
        "generate",
        py_child(
            "dataset.py", "generate", "--landing", str(ds.landing), "--finance", str(ds.finance), *gen_args
        ),
    )
    say(f"generated {gen.result['rows_landed']:,} raw rows ({gen.result['landing_mb']} MB Parquet)")
    build = run_child(
        "build prod v1",
        [str(RESTATE_BIN), "load", "--json"],
        env=restate_env(ds.baseline, ds.landing, ds.finance, RESTATE_PROJECT_VARS='{"revenue_logic": "v1"}'),
    )
    run_child(
        "export deduped",
        py_child(
            "dataset.py",
            "export",
            "--warehouse",
            str(ds.baseline / "warehouse.duckdb"),
            "--out",
            str(ds.deduped),
        ),
    )
    slices = run_child(
        "freshness slices",
        py_child(
            "dataset.py",
            "slices",
            "--landing",
            str(ds.fresh_landing),
            "--finance",
            str(WORK / "data" / "fresh_finance"),
            "--slices",
            str(ds.fresh_slices),
            "--t0",
            T0,
            "--count",
            str(FRESH_SLICES),
            *gen_args,
        ),
    )
    fresh_build = run_child(
        "build fresh prod v1",
        [str(RESTATE_BIN), "load", "--json"],
        env=restate_env(
            ds.fresh_baseline,
            ds.fresh_landing,
            WORK / "data" / "fresh_finance",
            RESTATE_PROJECT_VARS='{"revenue_logic": "v1"}',
        ),
    )
    say(f"production (v1) built in {build.wall_s:.1f}s; freshness slices rows {slices.result['slice_rows']}")
    info = {
        **gen.result,
        "prod_build_s": build.wall_s,
        "fresh_prod_build_s": fresh_build.wall_s,
        "freshness_slice_rows": slices.result["slice_rows"],
        "warehouse_mb": round((ds.baseline / "warehouse.duckdb").stat().st_size / 2**20, 1),
    }
    ready = DataSet(
        **{
            **ds.__dict__,
            "start": str(gen.result["period_start"]),
            "end": str(gen.result["period_end"]),
            "info": info,
        }
    )
    (data / "dataset.json").write_text(
        json.dumps({"scale": scale.__dict__, "start": ready.start, "end": ready.end, "info": info})
    )
    return ready


def reuse_data(scale: Scale) -> DataSet | None:
    """The data an earlier run prepared at the same scale, or None."""
    data = WORK / "data"
    try:
        saved = json.loads((data / "dataset.json").read_text())
    except (OSError, ValueError):
        return None
    if saved.get("scale") != scale.__dict__:
        return None
    return _dataset(data, saved["start"], saved["end"], saved["info"])


def _stats(runs: list[ChildRun], key: str = "total_s") -> dict[str, Any]:
    values = [float(r.result[key]) for r in runs]
    return {
        "median_s": median(values),
        "runs_s": values,
        "peak_rss_mb": max(r.peak_rss_mb for r in runs),
        "process_wall_s": median([r.wall_s for r in runs]),
    }


def check_equal(name: str, expected: Path, actual: Path, where: str | None = None) -> dict[str, Any]:
    """The benchmark fails unless the tool's table equals the limit query's table."""
    args = ["compare", "--expected", str(expected), "--actual", str(actual)]
    if where:
        args += ["--where", where]
    res = run_child(f"compare {name}", py_child("limit.py", *args)).result
    if not res["equal"]:
        raise ChildError(f"{name}: output differs from the limit query's table: {res}")
    return res


def measure_limit(python: Path, ds: DataSet, scale: Scale, tag: str) -> dict[str, Any]:
    """Raw floor (dedupe + aggregate from Parquet) and aggregate floor, on one DuckDB version."""
    out_raw = WORK / "out" / f"limit_raw_{tag}.parquet"
    out_agg = WORK / "out" / f"limit_agg_{tag}.parquet"
    raw = run_child(
        f"limit raw ({tag})",
        [
            str(python),
            str(BENCH_DIR / "limit.py"),
            "raw",
            "--glob",
            ds.raw_glob,
            "--workdir",
            str(WORK),
            "--runs",
            str(scale.runs),
            "--out",
            str(out_raw),
        ],
    )
    agg = run_child(
        f"limit agg ({tag})",
        [
            str(python),
            str(BENCH_DIR / "limit.py"),
            "agg",
            "--deduped",
            str(ds.deduped),
            "--workdir",
            str(WORK),
            "--runs",
            str(scale.runs),
            "--out",
            str(out_agg),
        ],
    )
    medians = {name: median(times) for name, times in raw.result["variants"].items()}
    best = min(medians, key=lambda k: medians[k])
    return {
        "duckdb": raw.result["duckdb"],
        "raw": {
            "median_s": medians[best],
            "statement": best,
            "variants_median_s": medians,
            "runs_s": raw.result["variants"][best],
            "peak_rss_mb": raw.peak_rss_mb,
            "rows": raw.result["rows"],
        },
        "agg": {
            "median_s": median(agg.result["variants"]["aggregate"]),
            "runs_s": agg.result["variants"]["aggregate"],
            "peak_rss_mb": agg.peak_rss_mb,
        },
        "out_raw": str(out_raw),
        "out_agg": str(out_agg),
    }


def _restate_run(ds: DataSet, name: str, args: list[str], run_dir: Path, **kw: Any) -> ChildRun:
    fresh_copy(ds.baseline, run_dir)
    # The fix is a var here (revenue_logic v1 -> the default); in production it is a code
    # change dbt re-parses file by file, and any command since (a load, `restate models`)
    # has parsed the project where it lives. Untimed, as that parse is in production.
    run_child(
        f"{name}: parse the fixed project",
        [str(RESTATE_BIN), "models"],
        env=restate_env(run_dir, ds.landing, ds.finance),
    )
    return run_child(
        name,
        py_child("restate_bench.py", *args),
        env=restate_env(run_dir, ds.landing, ds.finance),
        log=WORK / "logs" / f"{name}.log",
        **kw,
    )


def scope_args(ds: DataSet, scope: str) -> list[str]:
    return [
        "--scope",
        scope,
        "--start",
        ds.start,
        "--end",
        ds.end,
        "--day",
        ONE_DAY,
        "--account",
        ONE_ACCOUNT,
    ]


def measure_restate(ds: DataSet, scope: str, runs: int, expected: Path, warm: bool = False) -> dict[str, Any]:
    """plan -> recompute -> validate -> diff -> promote for one scope, `runs` times; with
    `warm`, in a process warmed first as `restate worker` warms itself (untimed)."""
    where = {
        "full": None,
        "day": f"event_date = date '{ONE_DAY}'",
        "account": f"account_id = '{ONE_ACCOUNT}'",
    }[scope]
    done: list[ChildRun] = []
    for i in range(runs):
        out = WORK / "out" / f"restate_{scope}_{i}.parquet"
        name = f"restate-{scope}{'-warm' if warm else ''}"
        run = _restate_run(
            ds,
            f"{name}-{i}",
            # One account restated alone cannot match the finance totals while every other
            # account is still wrong: its validation fails by design and is overridden
            # (audited), as an operator would; the check still runs and is timed.
            ["run", *scope_args(ds, scope), "--out", str(out)]
            + (["--force-validation"] if scope == "account" else [])
            + (["--warm"] if warm else []),
            WORK / "runs" / name,
        )
        check_equal(f"restate {scope}", expected, out, where)
        say(
            f"restate {scope}{' (warm)' if warm else ''} run {i + 1}/{runs}: "
            f"{run.result['total_s']:.1f}s {run.result['parts']}"
        )
        done.append(run)
    stats = _stats(done)
    parts = {k: median([r.result["parts"][k] for r in done]) for k in done[0].result["parts"]}
    return {
        **stats,
        "parts": parts,
        "peak_rss_mb_after": done[0].result.get("peak_rss_mb_after", {}),
        "import_s": median([r.result["import_s"] for r in done]),
        "warm_up_s": done[0].result.get("warm_up_s"),
        "counts": done[0].result["counts"],
        "validation_passed": all(r.result["phases"].get("validation_passed") for r in done),
        "correct": True,
    }


def measure_resume(ds: DataSet, runs: int, expected: Path, warm: bool = False) -> dict[str, Any]:
    """SIGKILL a 14-month run once half its chunks are done, then time the rerun to promotion;
    with `warm`, both in warmed processes (the rerun on another worker, as after a crash)."""
    results = []
    for i in range(runs):
        tag = "-warm" if warm else ""
        run_dir = WORK / "runs" / f"restate-resume{tag}"
        state: dict[str, int] = {"chunks": 0, "done": 0}

        def on_line(line: str, proc: subprocess.Popen[str], state: dict[str, int] = state) -> None:
            event = parse_progress(line)
            if not event:
                return
            if event["event"] == "planned":
                state["chunks"] = int(event["chunks"])
            elif event["event"] == "chunk_done":
                state["done"] += 1
                if state["done"] >= max(1, state["chunks"] // 2) and proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)

        killed = _restate_run(
            ds,
            f"restate-resume{tag}-kill-{i}",
            ["run", *scope_args(ds, "full"), *(["--warm"] if warm else [])],
            run_dir,
            on_line=on_line,
            check=False,
        )
        if killed.returncode != -signal.SIGKILL:
            raise ChildError(f"resume: the run was not killed half way (exit {killed.returncode})")
        out = WORK / "out" / f"restate_rerun_{i}.parquet"
        rerun = run_child(
            f"restate-resume{tag}-rerun-{i}",
            py_child(
                "restate_bench.py",
                "rerun",
                "--restatement-id",
                "1",
                "--out",
                str(out),
                *(["--warm"] if warm else []),
            ),
            env=restate_env(run_dir, ds.landing, ds.finance),
            log=WORK / "logs" / f"restate-resume{tag}-rerun-{i}.log",
        )
        check_equal("restate rerun", expected, out)
        say(
            f"resume{' (warm)' if warm else ''} {i + 1}/{runs}: "
            f"killed after {state['done']}/{state['chunks']} chunks "
            f"({killed.wall_s:.1f}s), rerun {rerun.result['total_s']:.1f}s"
        )
        results.append((killed, rerun, dict(state)))
    reruns = [r for _, r, _ in results]
    return {
        **_stats(reruns),
        "killed_after_chunks": results[0][2]["done"],
        "chunks": results[0][2]["chunks"],
        "killed_at_s": median([k.wall_s for k, _, _ in results]),
        "counts": reruns[0].result["counts"],
        "parts": reruns[0].result["parts"],
        "peak_rss_mb_after": reruns[0].result.get("peak_rss_mb_after", {}),
        "correct": True,
    }


def measure_microbatch(ds: DataSet, runs: int, expected: Path) -> dict[str, Any]:
    """dbt microbatch (batch_size day): v1 build once, then the timed v2 backfill, `runs` times."""
    work = WORK / "runs" / "microbatch"
    work.mkdir(parents=True, exist_ok=True)
    base = work / "base.duckdb"
    window = ["--start", ds.start, "--end", _day_after(ds.end)]
    setup = run_child(
        "microbatch setup",
        py_child(
            "microbatch_bench.py",
            "setup",
            "--db",
            str(base),
            "--workdir",
            str(work),
            "--deduped",
            str(ds.deduped),
            *window,
        ),
    )
    done = []
    for i in range(runs):
        db = fresh_copy(base, work / "run.duckdb")
        out = WORK / "out" / f"microbatch_{i}.parquet"
        run = run_child(
            f"microbatch-{i}",
            py_child(
                "microbatch_bench.py",
                "run",
                "--db",
                str(db),
                "--workdir",
                str(work),
                "--out",
                str(out),
                *window,
            ),
        )
        check_equal("dbt microbatch", expected, out)
        say(f"microbatch run {i + 1}/{runs}: {run.result['total_s']:.1f}s ({run.result['batches']} batches)")
        done.append(run)
    return {
        **_stats(done),
        "batches": done[0].result["batches"],
        "setup_s": setup.result["setup"]["total_s"],
        "sql_s": median([r.result["node_s"] for r in done]),
        "import_s": median([r.result["import_s"] for r in done]),
        "correct": True,
    }


def _day_after(day: str) -> str:
    from datetime import date, timedelta

    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def ensure_sqlmesh_venv() -> str | None:
    """SQLMesh in its own virtualenv, never in the project's; returns why not, if it cannot be."""
    if SQLMESH_PY.exists():
        probe = subprocess.run([str(SQLMESH_PY), "-c", "import sqlmesh, duckdb"], capture_output=True)
        if probe.returncode == 0:
            return None
    say("installing sqlmesh into its own virtualenv (pip install sqlmesh)")
    try:
        subprocess.run(["python3", "-m", "venv", str(SQLMESH_VENV)], check=True, capture_output=True)
        subprocess.run(
            [str(SQLMESH_VENV / "bin" / "pip"), "install", "--quiet", "sqlmesh"],
            check=True,
            capture_output=True,
            text=True,
            env=base_env(),
            timeout=900,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        return f"pip install sqlmesh failed: {str(detail).strip()[-500:]}"
    return None


def sqlmesh_version() -> str:
    out = subprocess.run(
        [str(SQLMESH_PY), "-c", "import sqlmesh; print(sqlmesh.__version__)"], capture_output=True, text=True
    )
    return out.stdout.strip()


def measure_sqlmesh(ds: DataSet, runs: int, expected: Path) -> dict[str, Any]:
    """sqlmesh plan --restate-model over the 14 months, `runs` times from the same v1 state."""
    work = WORK / "runs" / "sqlmesh"
    work.mkdir(parents=True, exist_ok=True)
    # SQLMesh names the DuckDB catalog after the file stem (copies keep the name), and a
    # file called sqlmesh.duckdb would clash with its state schema "sqlmesh".
    base, project = work / "base" / "warehouse.duckdb", work / "project"
    base.parent.mkdir(parents=True, exist_ok=True)
    env = base_env()
    setup = run_child(
        "sqlmesh setup",
        [
            str(SQLMESH_PY),
            str(BENCH_DIR / "sqlmesh_bench.py"),
            "setup",
            "--project",
            str(project),
            "--db",
            str(base),
            "--deduped",
            str(ds.deduped),
        ],
        env=env,
    )
    done = []
    for i in range(runs):
        db = fresh_copy(base, work / "run" / "warehouse.duckdb")
        out = WORK / "out" / f"sqlmesh_{i}.parquet"
        run = run_child(
            f"sqlmesh-{i}",
            [
                str(SQLMESH_PY),
                str(BENCH_DIR / "sqlmesh_bench.py"),
                "run",
                "--project",
                str(project),
                "--db",
                str(db),
                "--start",
                ds.start,
                "--end",
                ds.end,
                "--out",
                str(out),
            ],
            env=env,
            log=WORK / "logs" / f"sqlmesh-{i}.log",
        )
        check_equal("sqlmesh", expected, out)
        say(f"sqlmesh run {i + 1}/{runs}: {run.result['total_s']:.1f}s")
        done.append(run)
    return {
        **_stats(done),
        "setup": setup.result,
        "import_s": median([r.result["import_s"] for r in done]),
        "correct": True,
    }


def measure_freshness(ds: DataSet) -> dict[str, Any]:
    """Incremental-flow latency per 15-minute slice, idle and during a 14-month restatement."""
    idle = _freshness_run(ds, "idle", loaded=False)
    loaded = _freshness_run(ds, "loaded", loaded=True)
    return {"idle": idle, "loaded": loaded}


def _freshness_run(ds: DataSet, name: str, loaded: bool) -> dict[str, Any]:
    """The load child warms up on its first slice with nothing else running; when loaded,
    the 14-month restatement then starts, and once it has written its first chunk the
    child loads every other slice back to back. Each load is reported (none discarded),
    with whether it overlapped the restatement; a loaded run none of whose loads overlapped
    fails rather than report an idle figure as a loaded one."""
    run_dir = fresh_copy(ds.fresh_baseline, WORK / "runs" / f"fresh-{name}")
    landing = fresh_copy(ds.fresh_landing, WORK / "runs" / f"fresh-{name}-landing")
    slices = fresh_copy(ds.fresh_slices, WORK / "runs" / f"fresh-{name}-slices")
    env = restate_env(run_dir, landing, WORK / "data" / "fresh_finance")
    slice_dirs = [str(p) for p in sorted(slices.glob("slice_*"))]
    go_file = WORK / "runs" / f"fresh-{name}.go"
    go_file.unlink(missing_ok=True)
    warmed, chunk_written = threading.Event(), threading.Event()
    loads: dict[str, Any] = {}
    background: dict[str, Any] = {}

    def on_load_line(line: str, proc: subprocess.Popen[str]) -> None:
        event = parse_progress(line)
        if event and event["event"] == "warmed_up":
            warmed.set()

    def load_child() -> None:
        try:
            loads["run"] = run_child(
                f"freshness {name}",
                py_child("freshness.py", *slice_dirs, "--go-file", str(go_file)),
                env=env,
                on_line=on_load_line,
                log=WORK / "logs" / f"fresh-{name}.log",
            )
        except ChildError as exc:
            loads["error"] = str(exc)
        finally:
            warmed.set()

    def on_restate_line(line: str, proc: subprocess.Popen[str]) -> None:
        event = parse_progress(line)
        if event and event["event"] == "chunk_done":
            chunk_written.set()

    def restatement() -> None:
        background["started_at"] = time.time()
        try:
            background["run"] = run_child(
                "freshness background restatement",
                py_child("restate_bench.py", "run", *scope_args(ds, "full"), "--force-validation"),
                env=env,
                on_line=on_restate_line,
                log=WORK / "logs" / "fresh-background.log",
            )
        except ChildError as exc:
            background["error"] = str(exc)
        finally:
            background["ended_at"] = time.time()
            chunk_written.set()

    loader = threading.Thread(target=load_child, daemon=True)
    loader.start()
    warmed.wait(timeout=600)
    restater = None
    if loaded:
        restater = threading.Thread(target=restatement, daemon=True)
        restater.start()
        chunk_written.wait(timeout=600)
    go_file.touch()
    loader.join()
    if restater is not None:
        restater.join()
        if "error" in background:
            raise ChildError(f"background restatement failed: {background['error']}")
    if "error" in loads:
        raise ChildError(loads["error"])
    result = loads["run"].result
    say(f"freshness {name}: {[round(x, 1) for x in result['latencies_s']]}")
    counted = result["latencies_s"][1:]  # the first slice ran before anything else started
    overlapped: list[bool] = []
    if loaded:
        begin, end = background["started_at"], background["ended_at"]
        overlapped = [
            a < end and f > begin
            for a, f in zip(result["arrived_at"][1:], result["finished_at"][1:], strict=True)
        ]
        if not any(overlapped):
            raise ChildError("no load overlapped the restatement: the loaded figure would be an idle one")
    during = [x for x, o in zip(counted, overlapped, strict=True) if o] if loaded else counted
    spans = background["run"].result.get("spans", []) if "run" in background else []
    waits = result.get("waits", [[] for _ in result["latencies_s"]])[1:]
    return {
        "waited_s": [round(sum(s for _, s in w), 3) for w in waits],
        "waited_on": [_waited_on(w, spans) for w in waits],
        "median_s": median(during),
        "max_s": max(during),
        "runs_s": counted,
        "overlapped": overlapped if loaded else None,
        "loads_during_restatement": sum(overlapped) if loaded else None,
        "warmup_s": result["latencies_s"][0],
        "rows_per_slice": result["rows_new"][1:],
        "load_retries": result.get("retries", [])[1:],
        "peak_rss_mb": loads["run"].peak_rss_mb,
        "restatement_still_running_at_end": (background["ended_at"] > result["finished_at"][-1])
        if loaded
        else None,
        "background_restatement_s": background["run"].result["total_s"] if "run" in background else None,
    }


def _waited_on(waits: list[list[float]], spans: list[list[Any]]) -> list[str]:
    """The restatement's steps a load's waits for the file overlapped, with the seconds
    of overlap, e.g. "checks 1.9 s" (the gaps between steps count as "between steps")."""
    out = []
    for start, seconds in waits:
        end = start + seconds
        parts: dict[str, float] = {}
        for name, begin, finish in spans:
            overlap = min(end, finish) - max(start, begin)
            if overlap > 0.05:
                parts[name] = parts.get(name, 0.0) + overlap
        rest = seconds - sum(parts.values())
        if rest > 0.05:
            parts["between steps"] = rest
        out.append(", ".join(f"{name} {s:.1f} s" for name, s in parts.items()))
    return out


def probe_dbt_parse(ds: DataSet) -> dict[str, Any]:
    """Profile: what one chunk's dbt call costs with the same vars vs with new vars."""
    run_dir = fresh_copy(ds.baseline, WORK / "runs" / "probe")
    run = run_child(
        "dbt parse probe", py_child("profile_dbt.py"), env=restate_env(run_dir, ds.landing, ds.finance)
    )
    return run.result
