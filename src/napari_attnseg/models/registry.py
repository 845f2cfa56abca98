"""Name -> architecture registry: ``create_model(name, in_channels, n_classes, **options)``.

Architectures (``models/architectures/``, imported by the package) register
themselves with :func:`register_model`; one class can
be registered under several names with different preset options (``unet``,
``use_net`` and ``attention_unet`` are one class). Every model built here
carries ``model.config``, a JSON-serialisable dict such that
``create_model(**model.config)`` rebuilds the same architecture.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .base import SegmentationModel
from .blocks.attention import disable_attention


@dataclass(frozen=True)
class ModelEntry:
    name: str
    cls: type[SegmentationModel]
    presets: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    #: options of the compact size the zoo ships and the CPU trains by default
    #: (``None``: a paper-size preset of another entry, not trained compactly)
    compact: dict[str, Any] | None = field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        """Default options of this entry (the class's config plus presets)."""
        return {**dataclasses.asdict(self.cls.Config()), **self.presets}

    def compact_options(self) -> dict[str, Any]:
        """The options of this entry's compact size (a fresh copy; ``{}``: its defaults)."""
        return dict(self.compact or {})


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    *,
    description: str = "",
    compact: dict[str, Any] | None = None,
    paper_size: bool = False,
    **presets: Any,
):
    """Class decorator: make ``cls`` buildable as ``name`` with preset options.

    ``compact`` names the options of the architecture's compact size (the
    width the zoo ships, the CPU default of ``attnseg train`` and what the
    benchmark measures); ``paper_size=True`` marks a preset that only exists
    to reproduce a paper's full size, which has no compact variant.
    """

    def decorate(cls: type[SegmentationModel]) -> type[SegmentationModel]:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered")
        doc = description or (cls.__doc__ or "").strip().splitlines()[0]
        small = None if paper_size else dict(compact or {})
        _REGISTRY[name] = ModelEntry(name, cls, dict(presets), doc, small)
        return cls

    return decorate


def list_models() -> list[str]:
    """Names of every registered architecture (not trained weights; see ``zoo``)."""
    return sorted(_REGISTRY)


def compact_architectures() -> list[str]:
    """Registered names that have a compact size (all but the paper-size presets)."""
    return sorted(name for name, entry in _REGISTRY.items() if entry.compact is not None)


def compact_options(name: str) -> dict[str, Any]:
    """The options of ``name``'s compact size (see :func:`register_model`)."""
    return get_entry(name).compact_options()


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown architecture {name!r}; available: {', '.join(sorted(_REGISTRY))}"
        ) from None


def _json_roundtrip(value: Any) -> Any:
    """Tuples become lists etc., so a config equals its JSON round trip."""
    return json.loads(json.dumps(value))


def create_model(
    name: str,
    in_channels: int = 1,
    n_classes: int = 1,
    *,
    pruned: list[str] | tuple[str, ...] = (),
    **options: Any,
) -> SegmentationModel:
    """Build a registered architecture.

    Parameters
    ----------
    name
        A name from :func:`list_models`.
    in_channels
        Channels of the input image (1 grey, 3 RGB, more allowed).
    n_classes
        1 for a binary logit, >= 2 for softmax classes (background included).
    pruned
        Dotted names of attention modules to replace by a pass-through
        (written by :func:`napari_attnseg.models.prune`).
    **options
        Architecture options; see ``<Class>.Config``. Unknown options are an error.
    """
    entry = get_entry(name)
    merged = {**entry.presets, **options}
    config_fields = {f.name for f in dataclasses.fields(entry.cls.Config)}
    unknown = sorted(set(merged) - config_fields)
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for architecture {name!r}; "
            f"valid options: {sorted(config_fields)}"
        )
    cfg = entry.cls.Config(**merged)
    model = entry.cls(in_channels, n_classes, cfg)
    if pruned:
        disable_attention(model, list(pruned), reason="pruned")
    model.config = _json_roundtrip(
        {
            "name": name,
            "in_channels": in_channels,
            "n_classes": n_classes,
            **dataclasses.asdict(cfg),
            "pruned": sorted(pruned),
        }
    )
    return model


def model_from_config(config: dict[str, Any]) -> SegmentationModel:
    """Rebuild a model (fresh weights) from ``model.config``."""
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError("a model config must be a dict with at least a 'name' key")
    return create_model(**config)
