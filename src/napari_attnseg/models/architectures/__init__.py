"""One module per architecture family; importing them registers their names."""

from . import afnet, denseunet, focusnet, unet  # noqa: F401
