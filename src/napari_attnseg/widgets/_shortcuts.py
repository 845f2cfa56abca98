"""Keyboard shortcuts: Ctrl+Shift+E runs Segment, Ctrl+Shift+R runs Fine-tune (⌘ on macOS).

napari 0.9 ignores the ``keybindings`` contribution of a plugin manifest (npe2
parses it; napari registers none of it — napari/napari#5338 is on hold), so
the shortcuts are *actions* of napari's action manager, bound to the viewer
(``keymapprovider=ViewerModel``): they work wherever the viewer's own
shortcuts do, and napari lists them with its own. They are registered when
the first of this plugin's docks opens.

A shortcut acts on the dock of that kind in the viewer it was pressed in: it
clicks the dock's button when the button is enabled, says why not otherwise
(no image open, a job running), and opens the dock when the viewer has none.
"""

from __future__ import annotations

import weakref

from app_model.types import KeyBinding, KeyCode, KeyMod
from napari.components import ViewerModel
from napari.utils.action_manager import action_manager

from ._jobs import is_alive
from ._layers import same_object
from ._notifications import notify_info, notify_warning

PLUGIN = "napari-attnseg"
SEGMENT, FINETUNE = "napari-attnseg:segment", "napari-attnseg:finetune"
#: action → (dock name, key, what it does)
ACTIONS = {
    SEGMENT: ("Segment", KeyMod.CtrlCmd | KeyMod.Shift | KeyCode.KeyE,
              "Segment the selected image (napari-attnseg)"),
    FINETUNE: ("Fine-tune", KeyMod.CtrlCmd | KeyMod.Shift | KeyCode.KeyR,
               "Fine-tune the selected model on the labels (napari-attnseg)"),
}
_WIDGETS: dict[str, weakref.WeakSet] = {name: weakref.WeakSet() for name in ACTIONS}
_REGISTERED = False


def describe(action: str) -> str:
    """The action's shortcut as this platform writes it, e.g. ``Ctrl+Shift+E``."""
    return KeyBinding.from_int(ACTIONS[action][1]).to_text()


def register() -> None:
    """Register the actions and bind their keys (once per process)."""
    global _REGISTERED
    if _REGISTERED:
        return
    for name, (_, key, description) in ACTIONS.items():
        action_manager.register_action(
            name, _command(name), description, keymapprovider=ViewerModel
        )
        action_manager.bind_shortcut(name, key)
    _REGISTERED = True


def track(widget, action: str) -> None:
    """Let ``action``'s shortcut act on ``widget`` (a dock of that kind)."""
    register()
    _WIDGETS[action].add(widget)


def widget_for(action: str, viewer):
    """The live dock widget of ``action``'s kind in ``viewer``, if one is open."""
    for widget in list(_WIDGETS[action]):
        if is_alive(widget) and same_object(widget.viewer, viewer):
            return widget
    return None


def trigger(action: str, viewer) -> bool:
    """What pressing the shortcut does in ``viewer``; True when a job started."""
    dock, _, _ = ACTIONS[action]
    widget = widget_for(action, viewer)
    if widget is None:
        window = getattr(viewer, "window", None)
        if window is not None:
            window.add_plugin_dock_widget(PLUGIN, dock)
            notify_info(f"opened {dock}: choose the inputs, then press {describe(action)} again")
        return False
    button = widget.run_button
    if widget.jobs.busy:
        notify_warning(f"{dock} is busy: wait for its job to end, or cancel it")
        return False
    if not button.isEnabled():
        notify_warning(f"{dock} cannot start: {button.toolTip()}")
        return False
    button.click()
    return widget.jobs.busy


def _command(action: str):
    def command(viewer: ViewerModel) -> None:
        trigger(action, viewer)

    command.__name__ = action.split(":")[1]
    return command
