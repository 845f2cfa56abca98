"""Record the training photographs' field of view in fundus model cards (issue 25).

    python scripts/card_fov.py --images runs/data/vessels/train/images \\
        src/napari_attnseg/zoo/weights/*.vessels.json

Measures each training photograph's field-of-view diameter the way prediction
does (``inference.fov_scale.measure_fov``: the larger side of the bright disc's
bounding box), prints them, and writes the median — in working pixels (times
the card's ``input_scale``) — as ``fov_diameter`` into each card given. The
cards' weights are untouched; a card written by this script says so in
``metadata.fov_diameter_source``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from napari_attnseg._files import atomic_write
from napari_attnseg.data.io import IMAGE_SUFFIXES, read_image
from napari_attnseg.inference.fov_scale import measure_fov


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="training photographs")
    parser.add_argument("cards", type=Path, nargs="*", help="model card JSON files to update")
    args = parser.parse_args(argv)
    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    diameters = []
    for path in paths:
        image = read_image(path)
        found = measure_fov(image if image.ndim == 3 else image[..., None],
                            rgb=image.ndim == 3)
        print(f"{path.name}: {found.diameter or found.doubt}")
        if found.credible:
            diameters.append(found.diameter)
    if not diameters:
        raise SystemExit("no field of view found in any image")
    median = statistics.median(diameters)
    print(f"median field of view: {median:.1f} px ({len(diameters)} of {len(paths)} images)")
    for card_path in args.cards:
        card = json.loads(card_path.read_text())
        card["fov_diameter"] = round(median * float(card.get("input_scale") or 1.0), 1)
        metadata = card.setdefault("metadata", {})
        metadata["fov_diameter_source"] = (
            f"median of {len(diameters)} training photographs ({args.images.as_posix()}), "
            "scripts/card_fov.py"
        )
        text = json.dumps(card, indent=2) + "\n"
        atomic_write(card_path, lambda tmp, text=text: Path(tmp).write_text(text))
        print(f"{card_path}: fov_diameter {card['fov_diameter']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
