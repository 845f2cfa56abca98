"""Reproducible train/validation splits.

All functions return ``(train_indices, val_indices)``: sorted, disjoint lists
of positions in the caller's list of items, the same for the same seed on
every machine (NumPy's PCG64 generator).

* :func:`split_indices` — a random fraction of items;
* :func:`split_by_groups` — whole groups on one side, for data whose items
  are not independent (CVC-ClinicDB: consecutive frames of one video);
* :func:`split_from_lists` — an official split given as name lists (Kvasir-SEG).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np

Split = tuple[list[int], list[int]]


def split_indices(n: int, val_fraction: float, seed: int = 0) -> Split:
    """Randomly put ``round(n * val_fraction)`` of ``n`` items in validation.

    At least one item goes to validation when ``n >= 2`` and ``val_fraction > 0``,
    and at least one stays in training.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    _check_fraction(val_fraction)
    n_val = _n_val(n, val_fraction)
    order = np.random.default_rng(seed).permutation(n)
    return sorted(int(i) for i in order[n_val:]), sorted(int(i) for i in order[:n_val])


def split_by_groups(
    groups: Sequence[Hashable],
    val_fraction: float | None = 0.2,
    *,
    val_groups: Sequence[Hashable] | None = None,
    seed: int = 0,
) -> Split:
    """Split items so that every group lies wholly in training or in validation.

    ``groups[i]`` is item *i*'s group (e.g. its video sequence). Either name the
    validation groups (``val_groups``), or let a seeded shuffle pick whole
    groups until about ``val_fraction`` of the *items* are in validation (at
    least one group on each side when there are two or more).
    """
    groups = list(groups)
    unique = list(dict.fromkeys(groups))  # first-seen order, so seeds are order-stable
    if val_groups is not None:
        chosen = set(val_groups)
        unknown = [g for g in chosen if g not in set(unique)]
        if unknown:
            raise ValueError(f"validation group(s) not found: {unknown[:5]}")
    else:
        if val_fraction is None:
            raise ValueError("give val_fraction or val_groups")
        _check_fraction(val_fraction)
        chosen = _pick_groups(groups, unique, val_fraction, seed)
    train = [i for i, g in enumerate(groups) if g not in chosen]
    val = [i for i, g in enumerate(groups) if g in chosen]
    return train, val


def split_from_lists(
    names: Sequence[str], train_list_path: str | Path, val_list_path: str | Path
) -> Split:
    """Split ``names`` (file names or stems) by two text files of names, one per line.

    Extensions are ignored on both sides, blank lines and ``#`` comments
    skipped. Names on neither list are left out of both; list entries absent
    from ``names`` are ignored (part of a dataset may be held back). A name on
    both lists, or no match at all, is an error.
    """
    train_names = _read_list(Path(train_list_path))
    val_names = _read_list(Path(val_list_path))
    both = sorted(train_names & val_names)
    if both:
        raise ValueError(f"{len(both)} name(s) are on both split lists, e.g. {both[:3]}")
    stems = [_stem(name) for name in names]
    train = [i for i, stem in enumerate(stems) if stem in train_names]
    val = [i for i, stem in enumerate(stems) if stem in val_names]
    if not train and not val:
        raise ValueError(
            f"none of the {len(stems)} names appear in {train_list_path} or {val_list_path}"
        )
    return train, val


def consecutive_groups(n: int, group_size: int) -> list[int]:
    """Group ids for ``n`` ordered items in blocks of ``group_size`` consecutive items.

    A fallback for video frames whose sequence boundaries are unknown: used
    with :func:`split_by_groups` it keeps neighbouring frames together, so only
    the frames at block edges can leak across the split.
    """
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    return [i // group_size for i in range(n)]


# -- internals ---------------------------------------------------------------
def _check_fraction(val_fraction: float) -> None:
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")


def _n_val(n: int, val_fraction: float) -> int:
    if n < 2 or val_fraction == 0:
        return 0
    return min(max(round(n * val_fraction), 1), n - 1)


def _pick_groups(
    groups: list[Hashable], unique: list[Hashable], val_fraction: float, seed: int
) -> set[Hashable]:
    if len(unique) < 2 or val_fraction == 0:
        return set()
    sizes = {g: 0 for g in unique}
    for g in groups:
        sizes[g] += 1
    target = val_fraction * len(groups)
    chosen: set[Hashable] = set()
    count = 0
    for position in np.random.default_rng(seed).permutation(len(unique)):
        group = unique[int(position)]
        if len(chosen) == len(unique) - 1:
            break
        # take the group if that brings the validation size closer to the target
        if not chosen or abs(count + sizes[group] - target) < abs(count - target):
            chosen.add(group)
            count += sizes[group]
        if count >= target:
            break
    return chosen


def _read_list(path: Path) -> set[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"split list not found: {path}") from None
    return {
        _stem(line.strip()) for line in lines if line.strip() and not line.lstrip().startswith("#")
    }


def _stem(name: str) -> str:
    path = Path(name)
    return path.stem if path.suffix.lower() in _KNOWN_SUFFIXES else path.name


_KNOWN_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".gif")
