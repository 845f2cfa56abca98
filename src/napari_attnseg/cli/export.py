"""``attnseg export``: write a model in a format other tools read.

``--format bioimageio`` writes a bioimage.io model package (spec 0.5, a
``.zip``) that ilastik, deepImageJ/Fiji, QuPath, bioimageio.core and napari's
bioimage.io plugins run: TorchScript and PyTorch weights, the preprocessing
the model card prescribes, test tensors computed by napari-attnseg, a cover
image, citations, licence and training details. napari-attnseg loads the
package back as it was (``--model X.zip`` everywhere). Needs the optional
``bioimageio.spec`` (``pip install "napari-attnseg[bioimageio]"``); check a
package with ``bioimageio test X.zip`` (from ``bioimageio.core``).

``--format safetensors`` writes napari-attnseg's own format (weights + JSON
card), e.g. to copy a zoo or user model elsewhere.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a model as a bioimage.io package (or safetensors + card)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        help="zoo name (focal_use_net.nuclei), task (nuclei), user model or path",
    )
    p.add_argument(
        "--format",
        choices=("bioimageio", "safetensors"),
        default="bioimageio",
        help="bioimageio: a bioimage.io model package (.zip, the default); "
        "safetensors: napari-attnseg's own weights + JSON card",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="file to write: X.zip for bioimageio, X.safetensors for safetensors",
    )
    p.add_argument(
        "--image",
        metavar="IMAGE",
        help="image for the package's test tensors and cover (default: a bundled sample "
        "that suits the model's task); a crop of at most 256×256 from its centre is used",
    )
    p.add_argument(
        "--author",
        action="append",
        default=[],
        metavar="NAME",
        help="author of the model, repeat for several (default: the card's authors)",
    )
    p.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..zoo import load

    out = Path(args.out).expanduser()
    model = load(args.model)
    if args.format == "safetensors":
        from ..models.persistence import card_of, card_path, save_model

        if out.suffix != ".safetensors":
            raise ValueError(f"--format safetensors writes a .safetensors file, got {out}")
        for path in (out, card_path(out)):
            if path.exists() and not args.force:
                raise ValueError(f"{path} already exists; pass --force to overwrite it")
        save_model(model, out, card=card_of(model))
        print(f"{args.model} -> {out} (+ {card_path(out).name})")
        return 0

    from ..export import export_bioimageio

    report = export_bioimageio(
        model, out, image=args.image, authors=args.author, overwrite=args.force
    )
    print(f"{args.model} -> {report.path} (bioimage.io model package, validated)")
    for note in report.notes:
        print(f"note: {note}")
    return 0
