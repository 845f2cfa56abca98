"""From files to samples to training patches, and train/validation splits."""

import numpy as np
import pytest
import torch
from PIL import Image

from napari_attnseg.data import (
    Augmenter,
    InputSpec,
    PatchDataset,
    Sample,
    consecutive_groups,
    labels_from_annotation,
    load_samples,
    pair_folder,
    split_by_groups,
    split_from_lists,
    split_indices,
)

rng = np.random.default_rng(0)


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _disc_sample(name="disc", size=(40, 48), channels=3, roi=None):
    yy, xx = np.mgrid[: size[0], : size[1]]
    mask = ((yy - size[0] / 2) ** 2 + (xx - size[1] / 2) ** 2 < 80).astype(np.int64)
    image = np.repeat(mask[None].astype(np.float32), channels, axis=0)
    return Sample(name, image + 0.01 * rng.random(image.shape, dtype=np.float32), mask, roi)


# -- pairing -------------------------------------------------------------------
def test_pair_folder_exact_stem_then_suffixed_masks(tmp_path):
    grey = np.zeros((8, 8), np.uint8)
    for name in ("10", "2", "a"):
        _save(tmp_path / "images" / f"{name}.png", grey)
    _save(tmp_path / "masks" / "2.png", grey)
    _save(tmp_path / "masks" / "10_manual1.png", grey)
    _save(tmp_path / "masks" / "a_mask.png", grey)
    _save(tmp_path / "masks" / "ab.png", grey)  # shares a prefix but is another image's mask
    pairs = pair_folder(tmp_path / "images", tmp_path / "masks")
    assert [(i.name, m.name, f) for i, m, f in pairs] == [
        ("2.png", "2.png", None),
        ("10.png", "10_manual1.png", None),
        ("a.png", "a_mask.png", None),
    ]


def test_pair_folder_with_fov_and_missing_masks(tmp_path):
    grey = np.zeros((8, 8), np.uint8)
    for name in ("21", "22", "23"):
        _save(tmp_path / "images" / f"{name}.png", grey)
        _save(tmp_path / "fov" / f"{name}_training_mask.png", grey)
    _save(tmp_path / "masks" / "21.png", grey)
    with pytest.raises(ValueError, match="2 image.*no mask.*22.png, 23.png"):
        pair_folder(tmp_path / "images", tmp_path / "masks")
    for name in ("22", "23"):
        _save(tmp_path / "masks" / f"{name}.png", grey)
    pairs = pair_folder(tmp_path / "images", tmp_path / "masks", fov_dir=tmp_path / "fov")
    assert [f.name for _, _, f in pairs] == [f"{n}_training_mask.png" for n in ("21", "22", "23")]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        pair_folder(tmp_path / "images", tmp_path / "nowhere")


# -- annotations ---------------------------------------------------------------
def test_dense_annotation():
    painted = np.array([[0, 255], [7, 0]])
    np.testing.assert_array_equal(labels_from_annotation(painted, "dense", 1), [[0, 1], [1, 0]])
    three = labels_from_annotation(np.array([[0, 1], [2, 0]]), "dense", 3)
    assert three.dtype == np.int64
    with pytest.raises(ValueError, match=r"0\.\.2, found 3"):
        labels_from_annotation(np.array([[0, 3]]), "dense", 3)


def test_sparse_annotation_and_empty_labels():
    painted = np.array([[0, 1], [2, 0]])
    np.testing.assert_array_equal(labels_from_annotation(painted, "sparse", 1), [[-1, 0], [1, -1]])
    with pytest.raises(ValueError, match="no labelled pixels"):
        labels_from_annotation(np.zeros((4, 4), np.uint8), "sparse", 1)
    with pytest.raises(ValueError, match="found 3"):
        labels_from_annotation(np.array([[1, 3]]), "sparse", 1)
    with pytest.raises(ValueError, match="annotation mode"):
        labels_from_annotation(painted, "scribble", 1)
    with pytest.raises(ValueError, match="2D"):
        labels_from_annotation(np.zeros((2, 2, 2)), "dense", 1)


# -- loading -------------------------------------------------------------------
def test_load_samples_normalises_scales_and_reports_progress(tmp_path):
    image = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    mask = np.zeros((20, 24), np.uint8)
    mask[5:15, 6:18] = 255
    fov = np.full((20, 24), 255, np.uint8)
    fov[:, :4] = 0
    pair = (
        _save(tmp_path / "i" / "x.png", image),
        _save(tmp_path / "m" / "x.png", mask),
        _save(tmp_path / "f" / "x.png", fov),
    )
    calls = []
    (sample,) = load_samples(
        [pair],
        InputSpec(3, {"mode": "zscore"}),
        progress=lambda done, total, message="": calls.append((done, total)),
    )
    assert (
        sample.name == "x"
        and sample.image.shape == (3, 20, 24)
        and sample.image.dtype == np.float32
    )
    assert sample.mask.dtype == np.int64 and set(np.unique(sample.mask)) == {0, 1}
    assert sample.roi.dtype == bool and not sample.roi[:, :4].any()
    assert calls == [(1, 1)]
    (half,) = load_samples([pair], InputSpec(1, {"mode": "minmax"}, scale=0.5))
    assert (
        half.image.shape == (1, 10, 12)
        and half.mask.shape == (10, 12)
        and half.roi.shape == (10, 12)
    )
    assert set(np.unique(half.mask)) == {0, 1}


def test_load_samples_rejects_stacks(tmp_path):
    import tifffile

    tifffile.imwrite(
        tmp_path / "stack.tif", np.zeros((3, 8, 8), np.uint8), photometric="minisblack"
    )
    pair = (tmp_path / "stack.tif", _save(tmp_path / "m" / "stack.png", np.zeros((8, 8), np.uint8)))
    with pytest.raises(ValueError, match="stack.tif is a stack"):
        load_samples([pair], InputSpec(3))


def test_load_samples_rejects_mismatched_mask(tmp_path):
    pair = (
        _save(tmp_path / "i" / "x.png", np.zeros((8, 8), np.uint8)),
        _save(tmp_path / "m" / "x.png", np.zeros((8, 9), np.uint8)),
    )
    with pytest.raises(ValueError, match="mask .* is 8x9 but image .* is 8x8"):
        load_samples([pair], InputSpec(1))


# -- patches -------------------------------------------------------------------
def test_patch_items_have_the_documented_shapes_and_dtypes():
    data = PatchDataset(
        [_disc_sample()], patch_size=16, augment=None, n_classes=1, samples_per_epoch=5
    )
    assert len(data) == 5
    item = data[3]
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert item["target"].shape == (16, 16) and item["target"].dtype == torch.int64
    assert item["valid"].shape == (16, 16) and item["valid"].dtype == torch.bool
    assert "dpt" not in item
    with pytest.raises(IndexError):
        data[5]


def test_patches_are_crops_of_the_sample():
    sample = _disc_sample()
    data = PatchDataset([sample], patch_size=16, augment=None, n_classes=1, samples_per_epoch=20)
    for item in data:
        image = item["image"].numpy()
        hits = [
            (y, x)
            for y in range(40 - 15)
            for x in range(48 - 15)
            if np.array_equal(sample.image[:, y : y + 16, x : x + 16], image)
        ]
        assert len(hits) == 1
        y, x = hits[0]
        np.testing.assert_array_equal(item["target"].numpy(), sample.mask[y : y + 16, x : x + 16])


def test_whole_images_when_patch_size_is_none():
    sample = _disc_sample(size=(37, 29))
    item = PatchDataset([sample], patch_size=None, augment=None, n_classes=1)[0]
    np.testing.assert_array_equal(item["image"].numpy(), sample.image)
    assert item["valid"].all()


def test_small_images_are_padded_and_the_padding_is_invalid():
    sample = _disc_sample(size=(10, 12))
    item = PatchDataset([sample], patch_size=16, augment=None, n_classes=1)[0]
    assert item["image"].shape == (3, 16, 16)
    valid = item["valid"].numpy()
    assert valid.sum() == 10 * 12
    np.testing.assert_array_equal(np.argwhere(valid).min(0), [3, 2])  # centred
    assert (item["target"].numpy()[~valid] == 0).all()


def test_roi_and_ignored_pixels_are_invalid():
    roi = np.ones((40, 48), bool)
    roi[:, :24] = False
    sample = _disc_sample(roi=roi)
    sample.mask[0, 30] = -1
    item = PatchDataset([sample], patch_size=None, augment=None, n_classes=1)[0]
    valid = item["valid"].numpy()
    assert not valid[:, :24].any() and not valid[0, 30] and valid[1:, 24:].all()
    assert (item["target"].numpy() >= 0).all()


def test_foreground_biased_sampling_hits_the_object():
    sample = _disc_sample(size=(64, 64))
    uniform = PatchDataset([sample], patch_size=8, augment=None, n_classes=1, samples_per_epoch=60)
    biased = PatchDataset(
        [sample], patch_size=8, augment=None, n_classes=1, samples_per_epoch=60, fg_fraction=1.0
    )
    assert all(item["target"][4, 4] == 1 for item in biased)
    assert sum(bool(item["target"].any()) for item in uniform) < 40


def test_dpt_is_computed_once_and_moves_with_the_sample():
    calls = []

    def fake_dpt(mask, k):
        calls.append(k)
        return np.stack([mask == c for c in range(k)]).astype(np.float32)

    sample = _disc_sample()
    data = PatchDataset(
        [sample],
        patch_size=16,
        augment=Augmenter(prob=1.0, seed=1),
        n_classes=1,
        with_dpt=True,
        samples_per_epoch=8,
        dpt_fn=fake_dpt,
    )
    PatchDataset(
        [sample], patch_size=None, augment=None, n_classes=1, with_dpt=True, dpt_fn=fake_dpt
    )  # reuses the cached map
    items = list(data)
    assert calls == [2] and sample.dpt.shape == (2, 40, 48)
    for item in items:
        assert item["dpt"].shape == (2, 16, 16)
        valid = item["valid"]
        # the foreground map was augmented exactly like the target (up to interpolation)
        agree = (item["dpt"][1][valid] > 0.5) == (item["target"][valid] == 1)
        assert agree.float().mean() > 0.9


def _distance_penalty_by_definition(mask: np.ndarray, n_classes: int) -> np.ndarray:
    """``W_c = 1 / d_c`` inside class ``c``, 0 outside, by brute force from the definition.

    ``d_c`` is the Euclidean distance from a pixel of class ``c`` to the nearest
    pixel of any other class (losses.py); a class that fills the image gets 1,
    an absent one 0. No distance transform library is used.
    """
    coords = np.stack(np.indices(mask.shape), axis=-1).reshape(-1, 2).astype(np.float64)
    flat = mask.reshape(-1)
    weights = np.zeros((n_classes, mask.size))
    for c in range(n_classes):
        inside, outside = flat == c, flat != c
        if inside.all():
            weights[c] = 1.0
        elif inside.any():
            gaps = coords[inside][:, None, :] - coords[outside][None, :, :]
            weights[c, inside] = 1.0 / np.sqrt((gaps**2).sum(-1)).min(axis=1)
    return weights.reshape(n_classes, *mask.shape)


@pytest.mark.parametrize("n_classes", [1, 3])
def test_patch_dataset_distance_penalty_map_matches_its_definition(n_classes):
    sample = _disc_sample()
    if n_classes == 3:
        sample.mask = sample.mask.copy()
        sample.mask[:, :6] = 2  # a third class touching the image border
    item = PatchDataset(
        [sample], patch_size=None, augment=None, n_classes=n_classes, with_dpt=True
    )[0]
    expected = _distance_penalty_by_definition(sample.mask, max(2, n_classes))
    assert expected[1].max() == 1.0 and 0 < expected[1][expected[1] > 0].min() < 0.3
    np.testing.assert_allclose(item["dpt"].numpy(), expected, rtol=1e-6)


def test_seeded_datasets_repeat_and_loader_workers_differ():
    sample = _disc_sample(size=(64, 64))

    def patches(seed):
        data = PatchDataset(
            [sample],
            patch_size=16,
            augment=Augmenter(seed=seed),
            n_classes=1,
            samples_per_epoch=4,
            seed=seed,
        )
        return torch.stack([item["image"] for item in data])

    assert torch.equal(patches(0), patches(0))
    assert not torch.equal(patches(0), patches(1))

    data = PatchDataset(
        [sample], patch_size=16, augment=Augmenter(), n_classes=1, samples_per_epoch=4
    )
    data.set_epoch(3)
    epoch_3 = torch.stack([item["image"] for item in data])
    data.set_epoch(3)
    assert torch.equal(torch.stack([item["image"] for item in data]), epoch_3)  # resumable
    loader = torch.utils.data.DataLoader(data, batch_size=2, num_workers=2)
    first, second = (batch["image"] for batch in loader)  # one batch from each worker
    assert not torch.equal(first, second)


def test_invalid_inputs_raise():
    sample = _disc_sample()
    with pytest.raises(ValueError, match="at least one sample"):
        PatchDataset([], patch_size=16, augment=None, n_classes=1)
    sample.mask[0, 0] = 3
    with pytest.raises(ValueError, match="outside -1..1"):
        PatchDataset([sample], patch_size=16, augment=None, n_classes=1)
    with pytest.raises(ValueError, match="does not match"):
        Sample("bad", np.zeros((1, 4, 4)), np.zeros((4, 5)))


# -- splits --------------------------------------------------------------------
def test_split_indices_deterministic_disjoint_and_never_empty():
    train, val = split_indices(10, 0.2, seed=0)
    assert (train, val) == split_indices(10, 0.2, seed=0)
    assert len(val) == 2 and sorted(train + val) == list(range(10))
    assert split_indices(10, 0.2, seed=1) != (train, val)
    assert len(split_indices(2, 0.01, seed=0)[1]) == 1
    assert split_indices(5, 0.0) == ([0, 1, 2, 3, 4], [])
    with pytest.raises(ValueError, match="val_fraction"):
        split_indices(5, 1.0)


def test_group_split_keeps_groups_whole():
    groups = [i // 7 for i in range(60)]  # 9 "video sequences"
    train, val = split_by_groups(groups, 0.2, seed=0)
    assert (train, val) == split_by_groups(groups, 0.2, seed=0)
    assert sorted(train + val) == list(range(60))
    assert not {groups[i] for i in train} & {groups[i] for i in val}
    assert 6 <= len(val) <= 18
    train, val = split_by_groups(["a", "b", "a", "c"], val_groups=["a"])
    assert (train, val) == ([1, 3], [0, 2])
    assert consecutive_groups(5, 2) == [0, 0, 1, 1, 2]
    with pytest.raises(ValueError, match="not found"):
        split_by_groups(["a", "b"], val_groups=["z"])


def test_split_from_lists_matches_stems(tmp_path):
    (tmp_path / "train.txt").write_text("a\nb.jpg\n\n# comment\nheld_back\n")
    (tmp_path / "val.txt").write_text("c\n")
    names = ["c.jpg", "a.jpg", "b.jpg", "extra.jpg"]
    assert split_from_lists(names, tmp_path / "train.txt", tmp_path / "val.txt") == ([1, 2], [0])
    (tmp_path / "val.txt").write_text("a\n")
    with pytest.raises(ValueError, match="both split lists"):
        split_from_lists(names, tmp_path / "train.txt", tmp_path / "val.txt")
