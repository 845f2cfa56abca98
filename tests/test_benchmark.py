"""``attnseg bench`` end to end on tiny sizes, and the pieces it is built from."""

import json
import time

import numpy as np
import pytest
import torch

from napari_attnseg.benchmark import (
    COMPACT_DEFAULTS,
    MONAI_ATTENTION_UNET,
    MONAI_REFERENCES,
    BenchSettings,
    MemoryMeter,
    build_network,
    default_architectures,
    evaluate_targets,
    throughput_ratios,
    time_repeats,
)
from napari_attnseg.cli import main
from napari_attnseg.inference import cpu_has_native_bf16


@pytest.fixture
def restore_threads():
    """``--threads`` changes a process-wide setting; put it back for the other tests."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_bench_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--arch", "--reference", "--sizes", "--batch-sizes", "--precision",
                   "--skip-large", "--large-size", "--quick", "--json"):
        assert option in out


def test_quick_bench_writes_documented_json(tmp_path, capsys, restore_threads):
    target = tmp_path / "bench.json"
    code = main([
        "bench", "--quick", "--device", "cpu", "--threads", "1",
        "--arch", "attention_unet", "--reference", MONAI_ATTENTION_UNET,
        "--sizes", "64", "--batch-sizes", "2", "--e2e-size", "64",
        "--large-size", "128", "--tile-size", "64",
        "--finetune-patches", "2", "--patch-size", "32", "--finetune-batch", "2",
        "--json", str(target), "--quiet",
    ])
    assert code == 0
    out = capsys.readouterr().out
    assert "attention_unet / monai.AttentionUnet per-image time at 64² batch 2" in out

    report = json.loads(target.read_text())
    assert report["command"].startswith("attnseg bench")
    machine_keys = {"device", "device_name", "torch", "torch_threads", "cpu_count"}
    assert machine_keys <= set(report["machine"])
    assert report["machine"]["torch_threads"] == 1
    # auto: bf16 autocast where the CPU computes it natively, fp32 elsewhere
    expected = "bfloat16" if cpu_has_native_bf16() else "fp32"
    assert report["precision"] == expected
    assert set(report["load_average"]) == {"start", "end"}

    models = [(r["model"], r["size"], r["batch"]) for r in report["throughput"]]
    assert models == [("attention_unet", 64, 2), (MONAI_ATTENTION_UNET, 64, 2)]
    for record in report["throughput"]:
        assert record["ms_per_image"] > 0 and record["images_per_s"] > 0
        assert record["peak_memory_mb"] >= 0 and record["params"] > 0
        assert record["repeats"] == len(record["times_s"]) >= 2
    assert report["throughput"][0]["options"] == COMPACT_DEFAULTS["attention_unet"]

    (ratio,) = report["ratios"]
    assert ratio["ours"] == "attention_unet" and ratio["reference"] == MONAI_ATTENTION_UNET
    ms = ratio["ours_ms_per_image"], ratio["reference_ms_per_image"]
    assert ratio["ratio"] == pytest.approx(ms[0] / ms[1])

    assert report["end_to_end"]["image"] == [64, 64, 3] and report["end_to_end"]["seconds"] > 0
    window = report["sliding_window"]
    assert window["image"] == [128, 128, 3] and window["tiles"] == 9  # 3 × 3 tiles of 64, step 48
    assert window["seconds"] > 0 and window["megapixels_per_s"] > 0
    assert window["host_rss_growth_mb"] >= 0
    (tune,) = report["finetune"]
    assert tune["model"] == "attention_unet" and tune["steps"] == 1 and tune["seconds"] > 0
    assert all({"target", "value", "limit", "applies", "met"} <= set(t) for t in report["targets"])


def test_cli_reference_choices_are_the_benchmarks_references():
    from napari_attnseg.cli.bench import REFERENCE_CHOICES

    assert REFERENCE_CHOICES == MONAI_REFERENCES


def test_compact_defaults_cover_every_default_architecture():
    for arch in default_architectures():
        assert arch in COMPACT_DEFAULTS, f"add a compact default for {arch!r}"
    assert "denseunet161" not in default_architectures()  # paper-size preset of denseunet


def test_monai_references_match_our_unet_widths():
    net, options = build_network(MONAI_ATTENTION_UNET)
    w = COMPACT_DEFAULTS["attention_unet"]["width"]
    assert options["channels"] == [w, 2 * w, 4 * w, 8 * w, 16 * w]
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 32, 32)


def test_ratios_pair_ours_with_monai_per_setting():
    records = [
        {"model": "attention_unet", "size": 256, "batch": 1, "ms_per_image": 30.0},
        {"model": MONAI_ATTENTION_UNET, "size": 256, "batch": 1, "ms_per_image": 20.0},
        {"model": "attention_unet", "size": 512, "batch": 1, "ms_per_image": 90.0},  # no partner
        {"model": MONAI_ATTENTION_UNET, "size": 512, "batch": 8, "error": "out of memory"},
    ]
    (ratio,) = throughput_ratios(records)
    assert (ratio["size"], ratio["batch"], ratio["ratio"]) == (256, 1, 1.5)


def test_time_repeats_honours_minimum_time_and_cap():
    calls = []
    times = time_repeats(lambda: calls.append(time.sleep(0.002)), torch.device("cpu"),
                         warmup=2, repeats=3, min_time=0.05, max_repeats=10)
    assert 3 <= len(times) <= 10 and len(calls) == len(times) + 2
    assert len(time_repeats(lambda: None, torch.device("cpu"), warmup=0, repeats=4)) == 4


def test_memory_meter_sees_allocations_tracemalloc_cannot():
    with MemoryMeter(torch.device("cpu")) as meter:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        time.sleep(0.03)
        del block
    assert meter.host_growth_mb is not None and meter.host_growth_mb >= 48


def test_settings_reject_bad_input():
    with pytest.raises(ValueError, match="reference"):
        BenchSettings(references=["monai.SegResNet"])
    with pytest.raises(ValueError, match="sizes"):
        BenchSettings(sizes=[])
    with pytest.raises(ValueError, match="large_size"):
        BenchSettings(large_size=8)
    assert BenchSettings.quick(sizes=[64]).sizes == [64]


def test_targets_apply_to_their_device():
    report = {
        "settings": {"batch_sizes": [1, 8]},
        "end_to_end": {"image": [512, 512, 3], "seconds": 1.2},
        "sliding_window": {"image": [4096, 4096, 3], "host_rss_growth_mb": 900.0},
        "throughput": [{"model": "unet", "source": "napari_attnseg", "size": 512, "batch": 8,
                        "images_per_s": 3.0}],
        "ratios": [{"ours": "attention_unet", "reference": MONAI_ATTENTION_UNET, "size": 512,
                    "batch": 8, "ratio": 1.1}],
    }
    on_cpu = {t["target"].split(" ")[0]: t for t in evaluate_targets(report, torch.device("cpu"))}
    assert on_cpu["end"]["applies"] and on_cpu["end"]["met"]
    assert on_cpu["4096²"]["applies"] and on_cpu["4096²"]["met"]
    assert not on_cpu["unet"]["applies"] and not on_cpu["unet"]["met"]
    assert not on_cpu["attention_unet"]["applies"]


def test_unknown_architecture_is_a_clear_error(capsys):
    assert main(["bench", "--quick", "--arch", "no_such_net", "--quiet"]) == 1
    assert "no_such_net" in capsys.readouterr().err


def test_synthetic_inputs_are_cheap_and_shaped():
    from napari_attnseg.benchmark import synthetic_image, synthetic_samples

    assert synthetic_image(32).shape == (32, 32, 3) and synthetic_image(32, 1).dtype == np.uint8
    (sample,) = synthetic_samples(1, 64, 3)
    assert sample.image.shape == (3, 64, 64) and sample.mask.max() == 1


def test_compact_defaults_match_the_zoo_recipes():
    """The benchmark measures the sizes the zoo ships (recipes/<arch>.<task>.json)."""
    from pathlib import Path

    recipes = sorted((Path(__file__).parents[1] / "recipes").glob("*.json"))
    if not recipes:
        pytest.skip("no zoo recipes in this checkout")
    for path in recipes:
        recipe = json.loads(path.read_text())
        if "arch" in recipe and recipe["arch"] in COMPACT_DEFAULTS:
            assert recipe.get("options", {}) == COMPACT_DEFAULTS[recipe["arch"]], path.name
