"""The GPU campaign: the whole zoo (and every table row) on one GPU within a time budget.

Runs ``--jobs`` runs at once, each with a ``--time-budget`` computed from the budget,
the number of runs and the jobs (:func:`gpu_plan`), then packages the zoo models that
beat what is shipped and fit the size budget, and rewrites ``docs/zoo.md`` and
``docs/results.md``. Writes ``runs/gpu/campaign.json`` (the plan and what every run
achieved) and ``runs/gpu/campaign.log``.
"""

from __future__ import annotations

import math
import shlex
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import paths
from .packaging import package
from .recipes import recipe_names
from .runs import Run, _threads, drive, zoo_run

#: seconds a run spends outside its training budget: start-up, CUDA, loading the data, one
#: epoch past the budget (the budget is checked after each epoch) and scoring
GPU_OVERHEAD_S = 40.0
#: seconds kept at the end for packaging (scoring the candidates again as fp16), docs/zoo.md
#: and docs/results.md
GPU_RESERVE_S = 120.0
#: runs at once: each is a process with its own CPU thread(s) preparing batches (the 16 cores
#: of the GPU machine), the network on the one GPU
GPU_JOBS = 12
#: the least training time worth starting a run for
MIN_RUN_S = 10.0


@dataclass
class TableRows:
    """What the campaign needs of ``scripts/paper_tables.py`` (passed in by
    ``scripts/gpu_campaign.py``: paper_tables imports this module, not the reverse)."""

    #: ``runs(variant, tasks, device)``: one run per unique table row
    runs: Callable[[str, list[str] | None, str], list[Run]]
    #: writes docs/results.md from the runs
    write: Callable[[], object]


def campaign_runs(
    *,
    zoo_variant: str = "full",
    tables_variant: str = "full",
    tables: TableRows | None = None,
    device: str = "cuda",
    tasks: list[str] | None = None,
) -> list[Run]:
    """Every zoo recipe of ``zoo_variant`` and, with ``tables``, every table row of
    ``tables_variant``, one run each (rows that train exactly a zoo recipe share its run)."""
    runs = []
    for name in recipe_names(zoo_variant):
        if not tasks or name.split(".")[1] in tasks:
            runs.append(zoo_run(name, zoo_variant, device))
    if tables is not None:
        runs += tables.runs(tables_variant, tasks, device)
    unique: dict[Path, Run] = {}
    for run in runs:
        unique.setdefault(run.run_dir, run)
    return list(unique.values())


def deal(runs: list[Run], jobs: int) -> list[list[Run]]:
    """Runs dealt to ``jobs`` workers, longest first, each to the least loaded worker."""
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    loads = [0] * jobs
    queues: list[list[Run]] = [[] for _ in range(jobs)]
    for run in sorted(runs, key=lambda r: -r.units):  # stable: zoo first, then table order
        worker = min(range(jobs), key=lambda w: (loads[w], w))
        loads[worker] += run.units
        queues[worker].append(run)
    return queues


def gpu_plan(
    runs: list[Run],
    *,
    budget_s: float = 600.0,
    jobs: int = GPU_JOBS,
    overhead_s: float = GPU_OVERHEAD_S,
    reserve_s: float = GPU_RESERVE_S,
) -> dict[str, Any]:
    """Who runs what, and each run's ``--time-budget``.

    Runs are dealt to ``jobs`` workers longest first (pruning runs count twice); the
    busiest worker holds ``makespan`` units; one unit of wall time is ``slot =
    (budget − reserve) / makespan`` and a run's ``--time-budget`` is ``slot − overhead``
    per training, so every worker ends by ``budget − reserve`` if each run keeps
    within its overhead.
    """
    queues = deal(runs, jobs)
    loads = [sum(r.units for r in queue) for queue in queues]
    makespan = max(loads) if runs else 0
    slot = (budget_s - reserve_s) / makespan if makespan else 0.0
    time_budget = math.floor(slot - overhead_s) if makespan else 0
    if runs and time_budget < MIN_RUN_S:
        raise ValueError(
            f"{len(runs)} runs ({sum(loads)} trainings) on {jobs} workers leave "
            f"{time_budget} s of training per run within {budget_s:g} s; raise --budget or "
            "--jobs, or leave out the tables (--no-tables)"
        )
    plan_runs = []
    for worker, queue in enumerate(queues):
        for run in queue:
            plan_runs.append(
                {
                    "run": run.label,
                    "kind": run.kind,
                    "worker": worker,
                    "units": run.units,
                    "run_dir": paths.rel(run.run_dir),
                    "time_budget_s": time_budget,
                    "command": shlex.join([*run.train, "--time-budget", str(time_budget)]),
                }
            )
    return {
        "budget_s": budget_s,
        "jobs": jobs,
        "threads_per_job": _threads(jobs),
        "overhead_s": overhead_s,
        "reserve_s": reserve_s,
        "n_runs": len(runs),
        "units": sum(loads),
        "makespan_units": makespan,
        "slot_s": round(slot, 1),
        "time_budget_s": time_budget,
        "estimated_s": round(makespan * slot + reserve_s, 1),
        "runs": plan_runs,
    }


def gpu_campaign(
    *,
    budget_s: float = 600.0,
    jobs: int = GPU_JOBS,
    zoo_variant: str = "full",
    tables_variant: str = "full",
    tables: TableRows | None = None,
    tasks: list[str] | None = None,
    device: str = "cuda",
    overhead_s: float = GPU_OVERHEAD_S,
    reserve_s: float = GPU_RESERVE_S,
    max_mb: float = 60.0,
    only_if_better: bool = True,
    dry_run: bool = False,
    out: Path | None = None,
) -> dict[str, Any]:
    """Train and package the whole zoo (and, with ``tables``, all table rows) within
    ``budget_s``; ``python scripts/gpu_campaign.py`` runs it with the tables.

    Untested on a GPU (none was available to this work; the plan and commands are
    tested on a CPU with ``--dry-run``).
    """
    started = time.time()
    runs = campaign_runs(
        zoo_variant=zoo_variant, tables_variant=tables_variant, tables=tables, device=device,
        tasks=tasks,
    )  # fmt: skip
    plan = gpu_plan(runs, budget_s=budget_s, jobs=jobs, overhead_s=overhead_s, reserve_s=reserve_s)
    plan.update(device=device, zoo_variant=zoo_variant, tables_variant=tables_variant)
    header = (
        f"GPU campaign: {plan['n_runs']} runs ({plan['units']} trainings) on {jobs} workers "
        f"({plan['threads_per_job']} CPU thread(s) each), {plan['makespan_units']} slots of "
        f"{plan['slot_s']:g} s: --time-budget {plan['time_budget_s']} s per training, "
        f"{overhead_s:g} s overhead per run, {reserve_s:g} s for packaging and reports; "
        f"at most {plan['estimated_s']:g} s of {budget_s:g} s"
    )
    if dry_run:
        print(header)
        for item in plan["runs"]:
            print(f"[worker {item['worker']}] {item['command']}")
        return plan
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("no CUDA GPU here: give --device cpu (or run it where there is one)")
    images = {r.train[r.train.index("--images") + 1] for r in runs}
    missing = sorted(folder for folder in images if not (paths.ROOT / folder).is_dir())
    if missing:
        raise SystemExit(f"no training data in {missing}: run scripts/make_splits.py first")
    out = out or paths.GPU_OUT
    out.mkdir(parents=True, exist_ok=True)
    log_lock = threading.Lock()
    log_path = out / "campaign.log"

    def log(line: str) -> None:
        stamped = f"[{time.time() - started:6.0f} s] {line}"
        with log_lock, open(log_path, "a") as f:
            print(stamped, flush=True)
            f.write(stamped + "\n")

    log(header)
    queues = [queue for queue in deal(runs, jobs) if queue]  # the plan's queues
    deadline = started + budget_s - reserve_s
    threads = plan["threads_per_job"]

    def worker(queue: list[Run]) -> list[dict]:
        records = []
        for i, run in enumerate(queue):
            units_left = sum(r.units for r in queue[i:])
            per_unit = (deadline - time.time()) / units_left
            budget = math.floor(per_unit - overhead_s)  # runs that ended early leave more
            if budget < MIN_RUN_S:
                log(f"{run.label}: not started, out of time")
                records.append({"run": run.label, "kind": run.kind, "state": "skipped"})
                continue
            record = drive(run, threads=threads, time_budget=budget, log=log,
                           timeout=(budget + overhead_s) * run.units * 2 + 60)  # fmt: skip
            record["time_budget_s"] = budget
            records.append(record)
        return records

    with ThreadPoolExecutor(jobs) as pool:
        records = [r for rs in pool.map(worker, queues) for r in rs]
    zoo_done = [r for r in records if r.get("kind") == "zoo" and r.get("dice") is not None]
    zoo_done.sort(key=lambda r: -r["dice"])  # the best first, while the size budget lasts
    shipped = package(
        [r["run"] for r in zoo_done],
        variant=zoo_variant,
        max_mb=max_mb,
        device=device,
        only_if_better=only_if_better,
        log=log,
    )
    if tables is not None:
        tables.write()
    result = {
        **plan,
        "records": records,
        "packaged": shipped,
        "total_s": round(time.time() - started, 1),
    }
    paths.write_json(out / "campaign.json", result)
    log(f"done in {result['total_s']:.0f} s; {paths.rel(out / 'campaign.json')}")
    return result
