"""What a bioimage.io export may fail with, and how to install what it needs."""

INSTALL_HINT = 'pip install "napari-attnseg[bioimageio]"'


class ExportError(ValueError):
    """The model cannot be exported as asked (the message says why)."""


__all__ = ["INSTALL_HINT", "ExportError"]
