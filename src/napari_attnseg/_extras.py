"""Optional extras: which ``pip install`` brings a module that an optional feature imports.

A feature of an extra that is not installed fails with Python's bare
``No module named 'zarr'``; :func:`missing_extra` turns such an error into a
sentence that names the command to run. The command line
(``cli.error_message``) and the docks (``widgets._notifications.describe_error``)
both use it.
"""

from __future__ import annotations

#: top-level module → the extra of ``setup.cfg`` that installs it
EXTRAS = {
    "dask": "distributed",
    "distributed": "distributed",
    "zarr": "distributed",
    "bokeh": "distributed",
    "bioimageio": "bioimageio",
    "xarray": "bioimageio",
}


def install_command(extra: str) -> str:
    return f'pip install "napari-attnseg[{extra}]"'


def missing_extra(exc: BaseException) -> str | None:
    """The message for an import error of an optional extra's module, else None."""
    module = None
    while exc is not None and module is None:
        if isinstance(exc, ModuleNotFoundError) and exc.name:
            module = exc.name.split(".")[0]
        exc = exc.__cause__ or exc.__context__
    extra = EXTRAS.get(module or "")
    if extra is None:
        return None
    return (f"this needs the optional package {module!r}, which is not installed: "
            f"{install_command(extra)}")
