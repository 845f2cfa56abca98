"""How the docks meet a screen: the time the first dock takes to open, and the heights docks ask.

    xvfb-run -a -s "-screen 0 1920x1080x24" python scripts/dock_probe.py 1366 768 out.png

Opens a napari window of W×H, the nuclei sample, then Segment and Fine-tune docked together
(as the Plugins menu does), and prints: the seconds the first dock took to open (imports
included: a fresh process), each dock's minimum height, and the window's size — which a
dock taller than the screen would force beyond H. Writes a screenshot to the path given.
"""

from __future__ import annotations

import os
import sys
import time


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    width, height = int(args[0]), int(args[1])
    shot = args[2] if len(args) > 2 else None
    import napari
    from qtpy.QtWidgets import QApplication

    def settle(seconds=0.5):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            QApplication.processEvents()
            time.sleep(0.02)

    viewer = napari.Viewer(title="dock probe")
    window = viewer.window._qt_window
    window.showNormal()
    window.resize(width, height)
    settle()
    viewer.open_sample("napari-attnseg", "nuclei")
    start = time.perf_counter()
    segment_dock, _ = viewer.window.add_plugin_dock_widget("napari-attnseg", "Segment")
    opened = time.perf_counter() - start
    finetune_dock, _ = viewer.window.add_plugin_dock_widget("napari-attnseg", "Fine-tune")
    settle(1.0)
    print(f"first dock open: {opened:.2f} s (load average {os.getloadavg()[0]:.2f})")
    for name, dock in (("Segment", segment_dock), ("Fine-tune", finetune_dock)):
        print(f"{name} dock: minimum height {dock.minimumSizeHint().height()} px, "
              f"height {dock.height()} px")
    print(f"window: {window.width()}×{window.height()} (asked {width}×{height})")
    if shot:
        viewer.screenshot(shot, canvas_only=False, flash=False)
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
