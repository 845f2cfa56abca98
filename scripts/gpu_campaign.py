#!/usr/bin/env python
"""The whole GPU campaign in one call: every zoo recipe and every table row on one GPU.

    python scripts/make_splits.py && python scripts/zoo.py recipes --full   # once
    python scripts/gpu_campaign.py [--budget 600] [--jobs 12] [--dry-run] [--no-tables]

Trains the full-width zoo recipes (``recipes/full/``) and the rows of the seed
papers' tables (``scripts/paper_tables.py``) on one NVIDIA GPU within
``--budget`` seconds, several runs at once, then packages every zoo model that
beats the shipped one and rewrites docs/zoo.md and docs/results.md. The plan
(slots, ``--time-budget`` per run) and the run driver are ``zoo.gpu_campaign``;
this script only brings the two together (``paper_tables`` imports ``zoo``, so
``zoo`` cannot import it). ``--dry-run`` prints the plan and every command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import paper_tables  # noqa: E402
import zoo  # noqa: E402


def table_runs(variant: str, tasks: list[str] | None, device: str) -> list[zoo.Run]:
    """One run per unique row of the papers' tables."""
    return [
        paper_tables.row_run(row, variant, device)
        for row in paper_tables.unique_rows(variant=variant, tasks=tasks)
    ]


#: the tables, as the campaign takes them
TABLES = zoo.TableRows(runs=table_runs, write=paper_tables.write_results)


def campaign(*, tables: bool = True, **kwargs) -> dict:
    """:func:`zoo.gpu_campaign` with (or without) the table rows."""
    return zoo.gpu_campaign(tables=TABLES if tables else None, **kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    g = parser
    g.add_argument("--budget", type=float, default=600.0, help="seconds for everything")
    g.add_argument("--jobs", type=int, default=zoo.GPU_JOBS, help="runs at once on the GPU")
    g.add_argument("--device", default="cuda")
    g.add_argument("--zoo-variant", choices=zoo.VARIANTS, default="full")
    g.add_argument("--tables-variant", choices=zoo.VARIANTS, default="full")
    g.add_argument("--no-tables", dest="tables", action="store_false")
    g.add_argument("--task", action="append", default=[], help="only these tasks (repeatable)")
    g.add_argument("--overhead", type=float, default=zoo.GPU_OVERHEAD_S, help="seconds per run")
    g.add_argument(
        "--reserve", type=float, default=zoo.GPU_RESERVE_S, help="seconds kept at the end"
    )
    g.add_argument("--max-mb", type=float, default=60.0)
    g.add_argument(
        "--replace",
        dest="only_if_better",
        action="store_false",
        help="ship every new model, even where the shipped one is better",
    )
    g.add_argument("--dry-run", action="store_true", help="print the plan and the commands")
    g.add_argument("--out", type=Path, default=None, help="campaign.json/log folder (runs/gpu)")
    args = parser.parse_args(argv)
    campaign(
        budget_s=args.budget,
        jobs=args.jobs,
        zoo_variant=args.zoo_variant,
        tables_variant=args.tables_variant,
        tables=args.tables,
        tasks=args.task or None,
        device=args.device,
        overhead_s=args.overhead,
        reserve_s=args.reserve,
        max_mb=args.max_mb,
        only_if_better=args.only_if_better,
        dry_run=args.dry_run,
        out=args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
