"""One module per architecture family; importing them registers their names."""

from . import unet  # noqa: F401
