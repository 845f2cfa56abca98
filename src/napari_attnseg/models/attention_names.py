"""Plain-language names for attention modules (for people who never read the model code).

:func:`attention_label` turns a dotted module name and the model it belongs
to into a name a biologist can read — ``decoder.0.gate`` of a (Focal)
Attention U-Net is "attention gate, decoder level 1 (coarsest)" — and
:func:`attention_labels` does so for every attention module of a model.
:func:`attention_short_label` gives the same module a tick label of at most
about 12 characters for charts ("gate D1", "SE E2", "spatial E2.3"), and
:func:`attention_short_key` the line that explains its abbreviations.
Names this module does not know (a custom architecture, a renamed module)
come back unchanged, so callers can always show the result.

Levels are numbered along the data flow: the encoder from the finest level
(full or near-full resolution) down, the decoder from the coarsest level up;
"(finest)" and "(coarsest)" mark the two ends. The module names are those of
``models/architectures``:

=============  ==================================================================
architecture   attention modules
=============  ==================================================================
U-Net family   ``decoder.i.gate`` (Attention Gates, ``decoder.0`` deepest);
               ``encoder.i.se``, ``bottleneck.se``, ``decoder.i.se`` (SE blocks)
FocusNet       ``main.levelK.gate`` (σ(D) gates from the attention branch, K = 1..3),
               ``main.levelK.se1`` / ``.se2`` (SE before / after the gate)
AF-Net         ``encoder.layerK.J.da.spatial`` / ``.da.channel`` (dual attention in
               block J of encoder level K), ``fuse.K.gate`` (GFF channel gates);
               the MFF centre has no attention module
DenseUNet      ``skips.i.pwa`` (point-wise attention), ``skips.i.sa`` (self-attention
               response), ``skips.0`` finest; joint attention holds both
=============  ==================================================================

This module never imports napari or Qt.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "FOCAL_EXPONENT",
    "FOCAL_EXPONENT_HELP",
    "attention_label",
    "attention_labels",
    "attention_short_key",
    "attention_short_label",
]

#: what to call the Focal ``w`` wherever a person reads it
FOCAL_EXPONENT = "Focal exponent w"
FOCAL_EXPONENT_HELP = (
    "Focal exponent w: a number the network learns in training; each attention "
    "coefficient a (0–1) is raised to the power w. w > 1 sharpens the map (only the "
    "strongest regions pass), w < 1 flattens it, w = 0 switches the module off "
    "(every coefficient 1). Yeung et al. prune modules with w < 0.2."
)

#: levels of the architectures whose depth is fixed
_FOCUSNET_LEVELS = 4
_AFNET_LEVELS = 4
_DENSEUNET_SKIPS = 4

#: the dotted names of ``models/architectures`` (shared by the long and the short names)
_UNET_GATE = re.compile(r"decoder\.(\d+)\.gate")
_UNET_ENCODER_SE = re.compile(r"encoder\.(\d+)\.se")
_UNET_DECODER_SE = re.compile(r"decoder\.(\d+)\.se")
_UNET_BOTTLENECK_SE = "bottleneck.se"
_FOCUSNET = re.compile(r"main\.level(\d+)\.(gate|se1|se2)")
_AFNET_DA = re.compile(r"encoder\.layer(\d+)\.(\d+)\.da\.(spatial|channel)")
_AFNET_GFF = re.compile(r"fuse\.(\d+)\.gate")
_DENSEUNET = re.compile(r"skips\.(\d+)\.(pwa|sa)")
#: FocusNet's SE blocks around the gate (its last level has a single SE block and no gate)
_FOCUSNET_SE_WHERE = {"se1": "before", "se2": "after"}
_FOCUSNET_SE_SHORT = {"se1": "pre", "se2": "post"}

#: abbreviations of the short names: (pattern found in a short name, what it means)
_SHORT_KEY = (
    (re.compile(r"\bE\d+(?![.\d])"), "E = encoder level (1 = finest)"),
    (re.compile(r"\bE\d+\.\d+"), "E2.3 = encoder level 2 (1 = finest), block 3"),
    (re.compile(r"\bD\d"), "D = decoder level (1 = coarsest)"),
    (re.compile(r"\bskip \d"), "skip 1 = finest skip connection"),
    (re.compile(r"\bSE\b"), "SE = channel attention (squeeze-and-excitation)"),
    (re.compile(r"\bpre\b|\bpost\b"), "pre / post = before / after the gate"),
    (re.compile(r"\bGFF\b"), "GFF = gated skip fusion"),
    (re.compile(r"\bPWA\b"), "PWA = point-wise attention"),
    (re.compile(r"\bSA\b"), "SA = self-attention"),
)


def _level(number: int, count: int | None, *, finest_first: bool) -> str:
    """``"level 2"``, with "(finest)" / "(coarsest)" at either end when ``count`` is known."""
    text = f"level {number}"
    if count is None or count < 2:
        return text
    first, last = ("finest", "coarsest") if finest_first else ("coarsest", "finest")
    if number == 1:
        return f"{text} ({first})"
    if number == count:
        return f"{text} ({last})"
    return text


def _config(model: Any) -> dict[str, Any]:
    if isinstance(model, str):
        return {"name": model}
    if isinstance(model, Mapping):
        return dict(model)
    return dict(getattr(model, "config", None) or {})


def _family(model: Any, config: Mapping[str, Any]) -> str | None:
    """The architecture class's name ("UNet", "FocusNet", …) or None when unknown."""
    from .registry import _REGISTRY

    entry = _REGISTRY.get(str(config.get("name", "")))
    if entry is not None:
        return entry.cls.__name__
    if model is None or isinstance(model, (str, Mapping)):
        return None
    return type(model).__name__


def _unet_depth(model: Any, config: Mapping[str, Any]) -> int | None:
    from .registry import _REGISTRY

    if "depth" in config:
        return int(config["depth"])
    decoder = getattr(model, "decoder", None)
    if decoder is not None and hasattr(decoder, "__len__"):
        return len(decoder)
    entry = _REGISTRY.get(str(config.get("name", "")))
    if entry is None:
        return None
    return int(entry.options().get("depth", 0)) or None


def _unet(name: str, depth: int | None) -> str | None:
    if m := _UNET_GATE.fullmatch(name):
        i = int(m[1]) + 1
        return f"attention gate, decoder {_level(i, depth, finest_first=False)}"
    if m := _UNET_ENCODER_SE.fullmatch(name):
        # the encoder's last level is not the coarsest (the bottleneck is): mark only the finest
        i = int(m[1]) + 1
        return f"channel attention (SE), encoder level {i}" + (" (finest)" if i == 1 else "")
    if name == _UNET_BOTTLENECK_SE:
        return "channel attention (SE), bottleneck (coarsest)"
    if m := _UNET_DECODER_SE.fullmatch(name):
        return f"channel attention (SE), decoder {_level(int(m[1]) + 1, depth, finest_first=False)}"
    return None


def _focusnet(name: str) -> str | None:
    m = _FOCUSNET.fullmatch(name)
    if not m:
        return None
    level = f"encoder {_level(int(m[1]), _FOCUSNET_LEVELS, finest_first=True)}"
    if m[2] == "gate":
        return f"attention-branch gate, {level}"
    where = f" {_FOCUSNET_SE_WHERE[m[2]]} the gate" if int(m[1]) < _FOCUSNET_LEVELS else ""
    return f"channel attention (SE){where}, {level}"


def _afnet(name: str) -> str | None:
    if m := _AFNET_DA.fullmatch(name):
        level = _level(int(m[1]), _AFNET_LEVELS, finest_first=True)
        return f"{m[3]} attention (DA), encoder {level}, block {int(m[2]) + 1}"
    if m := _AFNET_GFF.fullmatch(name):
        # fuse.0 merges the level-3 feature, fuse.2 the level-1 one: 3 fusions
        return f"channel gate (GFF), decoder {_level(int(m[1]) + 1, 3, finest_first=False)}"
    return None


def _denseunet(name: str) -> str | None:
    m = _DENSEUNET.fullmatch(name)
    if not m:
        return None
    level = _level(int(m[1]) + 1, _DENSEUNET_SKIPS, finest_first=True)
    what = {"pwa": "point-wise attention (PWA)", "sa": "self-attention response (SA)"}[m[2]]
    return f"{what}, skip {level}"


def _unet_short(name: str) -> str | None:
    if m := _UNET_GATE.fullmatch(name):
        return f"gate D{int(m[1]) + 1}"
    if m := _UNET_ENCODER_SE.fullmatch(name):
        return f"SE E{int(m[1]) + 1}"
    if name == _UNET_BOTTLENECK_SE:
        return "SE bottom"
    if m := _UNET_DECODER_SE.fullmatch(name):
        return f"SE D{int(m[1]) + 1}"
    return None


def _focusnet_short(name: str) -> str | None:
    m = _FOCUSNET.fullmatch(name)
    if not m:
        return None
    level = int(m[1])
    if m[2] == "gate":
        return f"gate E{level}"
    where = f"{_FOCUSNET_SE_SHORT[m[2]]} " if level < _FOCUSNET_LEVELS else ""
    return f"SE {where}E{level}"


def _afnet_short(name: str) -> str | None:
    if m := _AFNET_DA.fullmatch(name):
        return f"{m[3]} E{int(m[1])}.{int(m[2]) + 1}"
    if m := _AFNET_GFF.fullmatch(name):
        return f"GFF gate D{int(m[1]) + 1}"
    return None


def _denseunet_short(name: str) -> str | None:
    m = _DENSEUNET.fullmatch(name)
    return f"{m[2].upper()} skip {int(m[1]) + 1}" if m else None


def _unknown(name: str) -> None:
    return None


_NAMERS = {"FocusNet": _focusnet, "AFNet": _afnet, "DenseUNet": _denseunet}
_SHORT_NAMERS = {
    "UNet": _unet_short, "FocusNet": _focusnet_short, "AFNet": _afnet_short,
    "DenseUNet": _denseunet_short,
}


def _namer(model: Any, *, short: bool = False) -> Callable[[str], str | None]:
    config = _config(model)
    family = _family(model, config)
    if family == "UNet" and not short:
        depth = _unet_depth(model, config)
        return lambda name: _unet(name, depth)
    return (_SHORT_NAMERS if short else _NAMERS).get(family or "", _unknown)


def attention_label(name: str, model: Any = None) -> str:
    """A plain-language name for the attention module ``name`` of ``model``.

    ``model`` is the network (a :class:`~.base.SegmentationModel`), its
    ``config`` dict or its architecture name (``"focal_attention_unet"``);
    an unknown architecture or module name returns ``name`` unchanged.

    >>> attention_label("decoder.0.gate", {"name": "focal_attention_unet", "depth": 2})
    'attention gate, decoder level 1 (coarsest)'
    """
    return _namer(model)(name) or name


def attention_short_label(name: str, model: Any = None) -> str:
    """A tick label of at most about 12 characters for the module ``name`` of ``model``.

    Levels are numbered as in :func:`attention_label` — "D" a decoder level,
    "E" an encoder level ("E2.3": level 2, block 3) — and
    :func:`attention_short_key` says what the abbreviations mean. ``model`` is
    read as by :func:`attention_label`; unknown names return ``name`` unchanged.

    >>> attention_short_label("decoder.0.gate", "focal_attention_unet")
    'gate D1'
    >>> attention_short_label("encoder.layer2.1.da.spatial", "afnet")
    'spatial E2.2'
    """
    return _namer(model, short=True)(name) or name


def attention_short_key(labels: Any) -> str:
    """One line explaining the abbreviations used in the short ``labels`` ("" if none).

    >>> attention_short_key(["gate D1", "gate D2"])
    'D = decoder level (1 = coarsest)'
    """
    return "; ".join(text for pattern, text in _SHORT_KEY
                     if any(pattern.search(label) for label in labels))


def attention_labels(model: Any, names: Any = None) -> dict[str, str]:
    """``{dotted name: plain name}`` for ``names`` (default: every attention module).

    Every plain name is unique: should two modules ever get the same one, both
    carry their dotted name in brackets.
    """
    if names is None:
        from .blocks.attention import iter_attention

        names = [name for name, _ in iter_attention(model)]
    namer = _namer(model)
    labels = {name: namer(name) or name for name in names}
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    return {
        name: f"{label} [{name}]" if counts[label] > 1 and label != name else label
        for name, label in labels.items()
    }
