"""The Fine-tune widget's rounds: which model each round came from, and what stays in memory.

A round trains a copy of the model selected in the picker (its *base*) and
ends as a new unsaved model with a name no model, layer or earlier round of
this session has used (``nuclei-ft1``, then ``nuclei-ft2``, … — a reverted
name is never reused, so the layers a reverted round made are never
overwritten).

:class:`Rounds` keeps one *current* round. Revert undoes it: its model leaves
the session (its file stays if it was saved) and the base — *the model that
was selected before the round* — is what is selected again. Memory holds at
most the current round's base and its result: when a round ends, the unsaved
models earlier rounds of this widget made are dropped unless one is the new
round's base. No copies of base weights are kept: fine-tuning never changes
the base (it trains a copy), so reverting needs only to select it again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._models import ModelChoice, ModelSession


@dataclass
class Round:
    """One finished fine-tuning round."""

    #: the model selected before the round: what Revert selects again
    base: ModelChoice
    #: the tuned model's name in the session (and in the names of the layers it made)
    name: str
    #: the session's template of the tuned model (its card already describes the round)
    model: Any
    history: Any
    summary: str = ""
    layers: list[str] = field(default_factory=list)
    saved_path: Path | None = None


class Rounds:
    """The current round and the unsaved models this widget made (see the module doc)."""

    def __init__(self, session: ModelSession) -> None:
        self.session = session
        self.current: Round | None = None
        #: unsaved models made by this widget's rounds that are still in the session
        self.made: list[str] = []

    def new_name(self, base: ModelChoice, taken: Callable[[str], bool] | None = None) -> str:
        """A name for a model tuned from ``base`` that nothing in this session has used."""
        return self.session.unsaved_name(base.name, taken)

    def finish(self, round_: Round) -> list[str]:
        """Make ``round_`` current and list its model; returns the unsaved models dropped."""
        self.session.add_unsaved(round_.model, round_.name)
        keep = {round_.name}
        if round_.base.kind == "session":
            keep.add(round_.base.name)
        dropped = [name for name in self.made if name not in keep]
        for name in dropped:
            self.session.remove_unsaved(name)
        self.made = [name for name in self.made if name in keep] + [round_.name]
        self.current = round_
        return dropped

    def would_drop(self, base: ModelChoice) -> list[str]:
        """The unsaved models a round starting from ``base`` will drop when it ends."""
        return [name for name in self.made
                if not (base.kind == "session" and name == base.name)
                and self.session.is_unsaved(name)]

    def revert(self) -> Round:
        """Undo the current round: its unsaved model leaves the session. Returns the round."""
        round_ = self.current
        if round_ is None:
            raise ValueError("nothing to revert: no fine-tuning round in this widget")
        self.current = None
        if round_.saved_path is None:
            self.session.remove_unsaved(round_.name)
        if round_.name in self.made:
            self.made.remove(round_.name)
        return round_

    def savable(self, selected: ModelChoice | None) -> tuple[str, Any] | None:
        """``(name, model)`` that Save as… writes: the *selected* model when this widget
        made it and it is not saved yet, else None. Never another round's model: after
        a Revert the selection is the earlier round, and that is what is saved."""
        if (selected is not None and selected.kind == "session" and selected.name in self.made
                and self.session.is_unsaved(selected.name)):
            return selected.name, self.session.template(selected)
        return None

    def saved(self, name: str, path: Path) -> None:
        if name in self.made:
            self.made.remove(name)
        if self.current is not None and self.current.name == name:
            self.current.saved_path = path
