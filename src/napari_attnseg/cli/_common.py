"""Helpers shared by the subcommands: progress bars, argument types, KEY=VALUE options,
output paths and overlays."""

from __future__ import annotations

import argparse
import collections.abc
import json
import math
import os
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .._files import file_identity

# overlays are drawn by objects.overlay (the engine for sets of files writes them too)
from ..objects.overlay import OUTLINE_COLOURS, ROI_COLOUR, STRETCH, overlay, write_overlay  # noqa: F401
from ..progress import TICKS, Tracker
from ..size_setting import check_size

#: a bar for a job reported in parts: a percentage, not thousandths
PERCENT_FORMAT = "{l_bar}{bar}| [{elapsed}<{remaining}{postfix}]"


class ProgressBar:
    """Adapts the engine's ``progress(done, total, message)`` callbacks to a tqdm bar."""

    def __init__(self, desc: str = "", disable: bool = False, unit: str = "step") -> None:
        self.bar = tqdm(total=1, desc=desc, disable=disable, unit=unit, dynamic_ncols=True)
        self.tracker = Tracker()

    def __call__(self, done: int, total: int, message: str = "") -> None:
        """Never backwards: a job whose parts report different totals is shown as the
        largest share reached (``progress.Tracker``), with tqdm's estimate of the time left;
        a job reported in parts (``progress.part``) as a percentage."""
        fraction = self.tracker.update(done, total)
        if self.tracker.in_parts:
            self.bar.bar_format = PERCENT_FORMAT
            total = TICKS
        if total > 0 and self.bar.total != total:
            self.bar.total = total
        self.bar.n = min(round(fraction * self.bar.total), self.bar.total)
        if message:
            self.bar.set_postfix_str(message, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: ``--precision`` choices: ``inference.device.PRECISIONS``, written out so that ``--help``
#: does not import torch (tests/test_precision.py checks that they agree)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: ``--roi`` words that are not files
ROI_WORDS = ("auto", "none")


def wants_instances(args: argparse.Namespace) -> bool:
    """Whether ``predict``'s arguments ask for instance labels (``--table`` implies them)."""
    return bool(getattr(args, "instances", False) or getattr(args, "table", False))


def inference_settings(args: argparse.Namespace):
    """``InferenceSettings`` from ``predict``/``evaluate``'s inference options (a ``--roi``
    file or folder is given per call, so the settings keep ``auto`` for it)."""
    from ..inference import InferenceSettings

    roi = getattr(args, "roi", "auto")
    stitch = getattr(args, "stitch", None)  # None: not given, the settings' default
    return InferenceSettings(
        device=args.device,
        precision=args.precision,
        tta=args.tta,
        tile_size=args.tile_size,
        overlap=args.overlap,
        batch_size=args.batch_size,
        threshold=args.threshold,
        diameter=getattr(args, "diameter", "auto"),
        fov_diameter=getattr(args, "fov_diameter", "auto"),
        instances=wants_instances(args),
        roi=roi if roi in ROI_WORDS else "auto",
        **({} if stitch is None else {"stitch": stitch or None}),
    )


def ignored_stitch(args: argparse.Namespace) -> str | None:
    """A note when ``--stitch``/``--no-stitch`` is given but no instances are asked for."""
    if getattr(args, "stitch", None) is None or wants_instances(args):
        return None
    flag = "--no-stitch" if args.stitch == 0 else "--stitch"
    return f"{flag} is ignored: it links objects of a stack, made with --instances or --table"


def add_device(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    parser.add_argument(
        "--device",
        default=default,
        help="auto (CUDA, then MPS, then CPU), cuda, cuda:N, mps or cpu",
    )


def parse_options(items: list[str], flag: str = "--option") -> dict[str, Any]:
    """``["width=16", "pruned=[\"a\"]"]`` -> ``{"width": 16, "pruned": ["a"]}``.

    Each value is read as JSON (numbers, true/false/null, lists, objects) and
    kept as a string when it is not valid JSON; ``flag`` names the option in errors.
    """
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files given directly, and the images inside folders given (hidden files skipped).

    A file named twice (``x.png dir/`` with ``dir/x.png``) is kept once; a
    missing input is a ``FileNotFoundError`` naming every missing one.
    """
    from ..data.io import IMAGE_SUFFIXES
    from ..data.pairing import natural_key

    paths: list[Path] = []
    missing: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = [
                p
                for p in path.iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
            ]
            if not found:
                raise ValueError(
                    f"no images ({', '.join(IMAGE_SUFFIXES)}) found in the folder {path}"
                )
            paths.extend(sorted(found, key=lambda p: natural_key(p.name)))
        elif path.exists():
            paths.append(path)
        else:
            missing.append(str(path))
    if missing:
        raise FileNotFoundError(f"input not found: {', '.join(missing)}")
    if not paths:
        raise ValueError("no input images found")
    unique: dict[object, Path] = {}
    for path in paths:
        unique.setdefault(file_identity(path), path)
    return list(unique.values())


# -- argument ranges ----------------------------------------------------------------------
def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``[low, high]``; the message names the range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {_range(low, high)}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def number(
    low: float | None = None, high: float | None = None, *, below_high: bool = False
) -> Callable[[str], float]:
    """An argparse ``type``: a finite number in ``[low, high]``, or ``[low, high)``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_high = high is not None and (value >= high if below_high else value > high)
        if not math.isfinite(value) or (low is not None and value < low) or too_high:
            raise argparse.ArgumentTypeError(
                f"must be {_range(low, high, below_high=below_high)}, got {text}"
            )
        return value

    parse.__name__ = "number"
    return parse


def diameter(text: str) -> float | str | None:
    """An argparse ``type`` for ``--diameter`` and ``--fov-diameter``: ``auto``, ``none``
    (None) or pixels above 0 (:func:`~napari_attnseg.size_setting.check_size`)."""
    try:
        return check_size(text, "the size")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected auto, none or a number of pixels above 0, got {text!r}"
        ) from None


def _range(low, high, *, below_high: bool = False) -> str:
    if low is not None and high is not None:
        if below_high:
            return f"at least {low:g} and below {high:g}"
        return f"between {low:g} and {high:g}"
    if low is not None:
        return f"at least {low:g}"
    return f"at most {high:g}" if high is not None else "a number"


# -- architecture options -------------------------------------------------------------------
def check_architecture_options(arch: str, options: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first ``--option`` whose value has the wrong type.

    The allowed types are the annotations of the architecture's ``Config``
    dataclass (``width: int``, ``focal: float | None``, ``se: bool | list[bool]``).
    Unknown names and range errors are left to ``create_model``, whose message
    lists the valid options.
    """
    from ..models import get_entry

    cls = get_entry(arch).cls.Config
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # pragma: no cover - annotations that cannot be resolved: no check
        return
    for key, value in options.items():
        hint = hints.get(key)
        if hint is not None and not _matches(value, hint):
            raise ValueError(
                f"--option {key}={json.dumps(value)}: {key} takes {_describe(hint)} "
                f"for architecture {arch!r}"
            )


def _matches(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if origin in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, list):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(_matches, value, args))
        return not args or all(_matches(item, args[0]) for item in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is dict or origin is dict:
        return isinstance(value, dict)
    return True  # a type this check does not know: create_model decides


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in args)
    if origin in (list, tuple, collections.abc.Sequence):
        return f"a list of ({_describe(args[0])})" if args else "a list"
    if origin is typing.Literal:
        return "one of " + ", ".join(json.dumps(a) for a in args)
    names = {
        bool: "true/false",
        int: "an integer",
        float: "a number",
        str: "a string",
        type(None): "null",
        dict: "a JSON object",
    }
    return names.get(hint, getattr(hint, "__name__", str(hint)))


# -- inputs and outputs -----------------------------------------------------------------------
def refuse_overwrite(outputs: Iterable[Path], inputs: Iterable[Path], what: str = "output") -> None:
    """``ValueError`` listing every output that would land on one of the ``inputs``: the
    engine's rule (:func:`napari_attnseg.inference.files.refuse_overwrite`), imported only
    when used so that ``--help`` does not import torch."""
    from ..inference.files import refuse_overwrite as refuse

    refuse(outputs, inputs, what)


def refuse_shared_stems(paths: Iterable[Path]) -> None:
    """``ValueError`` listing the inputs whose outputs would share a name (``<stem>.tif``):
    :func:`napari_attnseg.inference.files.refuse_shared_stems`, imported when used."""
    from ..inference.files import refuse_shared_stems as refuse

    refuse(paths)


def model_outputs(path: str | os.PathLike) -> list[Path]:
    """The two files ``save_model(model, path)`` writes: weights and card."""
    from ..models.persistence import card_path, weights_path

    weights = weights_path(path)
    return [weights, card_path(weights)]


def model_inputs(spec: str | None) -> list[Path]:
    """The files a MODEL argument reads (weights and card), if it names existing ones."""
    from ..models.persistence import card_path
    from ..zoo import resolve
    from ..zoo.remote import is_url

    if not spec or is_url(spec):
        return []
    try:
        weights = resolve(spec)
    except Exception:  # an unknown model: the command reports it when it loads the model
        return []
    return [weights, card_path(weights)]


def files_in(*folders: str | os.PathLike | None) -> list[Path]:
    """Every file directly inside the given folders (``None`` and missing ones skipped)."""
    files: list[Path] = []
    for folder in folders:
        if folder is not None and Path(folder).is_dir():
            files.extend(p for p in Path(folder).iterdir() if p.is_file())
    return files


def refuse_model_overwrite(args: argparse.Namespace) -> None:
    """Before ``train``/``finetune``/``prune`` run: ``--out`` must not land on any input.

    Inputs are the model the command starts from (weights and card), the
    ``--config`` recipe and the files of every image, mask and ROI folder.
    """
    if not getattr(args, "out", None):
        return
    inputs = model_inputs(getattr(args, "model", None))
    if getattr(args, "config", None):
        inputs.append(Path(args.config))
    folders = ("images", "masks", "fov", "val_images", "val_masks", "val_fov")
    inputs += files_in(*(getattr(args, name, None) for name in folders))
    refuse_overwrite(model_outputs(args.out), inputs, what="--out")
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(
            f"--out {out} is a folder; give a file name for the model (e.g. {out / 'model'})"
        )

