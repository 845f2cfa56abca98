"""napari-attnseg: interactive attention-based segmentation for napari.

Where a change belongs — the layers, each importing only from its own row and below::

    cli, widgets                     the two faces: argparse subcommands, Qt dock widgets
      ↓
    export, benchmark                bioimage.io packages out; timing and memory
      ↓
    zoo, training                    model names → files (shipped, user, URL, bioimage.io);
      ↓                              the trainer, recipes, fine-tuning samples
    inference                        Predictor (network per call), attention maps,
      ↓                              evaluation, the card's object rules
    data, losses, metrics, objects   files ↔ arrays, InputSpec (the one input path),
      ↓                              samples and patches; losses; pixel metrics;
      ↓                              instances, sizes, tables, instance metrics, FOV
    models                           architectures, attention blocks, registry, card,
                                     safetensors persistence, introspection

Everything below ``cli``/``widgets`` is the engine: it never imports napari or
Qt, and reports progress through callbacks (``progress.py``), so the same code
runs in a thread worker, the command line and tests. An image reaches a
network only through :class:`napari_attnseg.data.InputSpec` (channels,
normalisation, working size — the model card's rules), and a recipe reaches
the trainer only as a :mod:`napari_attnseg.training` object.
"""

__version__ = "0.1.0"
