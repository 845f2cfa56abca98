"""``attnseg bench``: inference and fine-tuning speed (placeholder until the benchmark lands)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark inference and fine-tuning", description=__doc__)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    raise ValueError("the benchmark is not implemented yet")
