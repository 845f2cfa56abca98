"""napari-attnseg: interactive attention-based segmentation for napari.

The engine (``models``, ``losses``, ``metrics``, ``data``, ``training``,
``inference``, ``zoo``) never imports napari or Qt; the dock widgets in
``widgets`` are thin layers over it.
"""

__version__ = "0.1.0"
