"""The papers and tags a bioimage.io package names, chosen from the architecture and task."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Citation:
    text: str
    doi: str


U_NET = Citation(
    "Ronneberger O, Fischer P, Brox T. U-Net: Convolutional Networks for Biomedical Image "
    "Segmentation. MICCAI 2015.",
    "10.1007/978-3-319-24574-4_28",
)
FOCAL_ATTENTION = Citation(
    "Yeung M, Rundo L, Sala E, Schönlieb C-B, Yang G. Focal Attention Networks: optimising "
    "attention for biomedical image segmentation. IEEE ISBI 2022.",
    "10.1109/ISBI52829.2022.9761414",
)
SQUEEZE_EXCITATION = Citation(
    "Hu J, Shen L, Sun G. Squeeze-and-Excitation Networks. IEEE CVPR 2018.",
    "10.1109/CVPR.2018.00745",
)
ATTENTION_GATES = Citation(
    "Oktay O, Schlemper J, Le Folgoc L, et al. Attention U-Net: Learning Where to Look for "
    "the Pancreas. MIDL 2018 (arXiv:1804.03999).",
    "10.48550/arXiv.1804.03999",
)
FOCUSNET = Citation(
    "Kaul C, Manandhar S, Pears N. FocusNet: An attention-based Fully Convolutional Network "
    "for Medical Image Segmentation. IEEE ISBI 2019 (arXiv:1902.03091).",
    "10.48550/arXiv.1902.03091",
)
AF_NET = Citation(
    "Hou G, Qin J, Xiang X, Tan Y, Xiong NN. AF-Net: A Medical Image Segmentation Network "
    "Based on Attention Mechanism and Feature Fusion. Computers, Materials & Continua "
    "69(2):1877-1891, 2021.",
    "10.32604/cmc.2021.017481",
)
JOINT_ATTENTION = Citation(
    "Zhang M, Dong B, Li Q. Joint Attention for Medical Image Segmentation. IEEE ISBI 2022.",
    "10.1109/ISBI52829.2022.9761624",
)

#: bioimage.io tags per task (modality and content categories where one fits)
TASK_TAGS = {
    "nuclei": ["nuclei", "fluorescence-light-microscopy", "transmission-light-microscopy"],
    "vessels": ["vasculature", "retina", "fundus-photography"],
    "membranes": ["cell-membrane", "electron-microscopy"],
    "polyp": ["polyp", "colonoscopy", "endoscopy"],
}
NETWORK_TAGS = {
    "denseunet": ["densenet", "unet"],
    "denseunet161": ["densenet", "unet"],
    "afnet": ["resnet"],
    "focusnet": ["resnet", "unet"],
}


def citations_for(config: Mapping[str, Any]) -> list[Citation]:
    """The papers an architecture config implements (seed papers and the blocks they build on)."""
    name = str(config.get("name", ""))
    if name == "focusnet":
        return [FOCUSNET, SQUEEZE_EXCITATION]
    if name == "afnet":
        return [AF_NET]
    if name.startswith("denseunet"):
        return [JOINT_ATTENTION]
    if "gates" in config or "se" in config:  # the U-Net family
        se, gates = any(config.get("se") or ()), any(config.get("gates") or ())
        cites = [U_NET]
        if se or gates or config.get("focal") is not None:
            cites.append(FOCAL_ATTENTION)
        if se:
            cites.append(SQUEEZE_EXCITATION)
        if gates:
            cites.append(ATTENTION_GATES)
        return cites
    return []


def tags(arch: str, task: str) -> list[str]:
    """bioimage.io tags of an architecture trained for a task."""
    network = NETWORK_TAGS.get(arch, ["unet"])
    found = ["2d", "pytorch", "semantic-segmentation", *network, *TASK_TAGS.get(task, [])]
    found += ["attention", "napari", "napari-attnseg", arch.replace("_", "-")]
    return list(dict.fromkeys(found))


__all__ = [
    "AF_NET",
    "ATTENTION_GATES",
    "FOCAL_ATTENTION",
    "FOCUSNET",
    "JOINT_ATTENTION",
    "NETWORK_TAGS",
    "SQUEEZE_EXCITATION",
    "TASK_TAGS",
    "U_NET",
    "Citation",
    "citations_for",
    "tags",
]
