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
    parse_variant,
    parse_variants,
    prepare_input,
    prepare_model,
    running,
    throughput_ratios,
    time_repeats,
    write_json,
    write_markdown,
)
from napari_attnseg.benchmark.report import markers
from napari_attnseg.cli import main
from napari_attnseg.inference import resolve_precision


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
                   "--variants", "--train-variants", "--window-variants", "--markdown",
                   "--from-json", "--skip-large", "--large-size", "--quick", "--json",
                   "--real-images", "--real-labels", "--no-real", "--only-real"):
        assert option in out


@pytest.mark.slow
def test_quick_bench_writes_documented_json(tmp_path, capsys, restore_threads):
    target, page = tmp_path / "bench.json", tmp_path / "page.md"
    code = main([
        "bench", "--quick", "--device", "cpu", "--threads", "1",
        "--arch", "attention_unet", "--reference", MONAI_ATTENTION_UNET,
        "--sizes", "64", "--batch-sizes", "2", "--e2e-size", "64",
        "--variants", "fp32", "fp32+cl", "auto+cl",
        "--train-batch", "2", "--train-patch-size", "32",
        "--large-size", "128", "--tile-size", "64", "--tile-batch", "2",
        "--finetune-patches", "2", "--patch-size", "32", "--finetune-batch", "2",
        "--json", str(target), "--markdown", str(page), "--quiet",
    ])
    assert code == 0
    out = capsys.readouterr().out
    assert "attention_unet / monai.AttentionUnet" in out and "Training step" in out

    report = json.loads(target.read_text())
    assert report["command"].startswith("attnseg bench")
    machine_keys = {"device", "device_name", "torch", "torch_threads", "cpu_count"}
    assert machine_keys <= set(report["machine"])
    assert report["machine"]["torch_threads"] == 1
    # auto: bf16 autocast where the CPU computes it natively and faster, fp32 elsewhere
    auto = resolve_precision(torch.device("cpu"))
    assert report["precision"] == auto
    assert set(report["load_average"]) == {"start", "end"}
    # variants that resolve alike are measured once (auto+cl = fp32+cl without bf16)
    variants = list(dict.fromkeys(["fp32", "fp32+cl", f"{auto}+cl"]))
    assert report["variants"] == variants and report["baseline_variant"] == "fp32"
    assert report["library_variant"] == f"{auto}+cl"

    measured = [(r["model"], r["variant"]) for r in report["throughput"]]
    assert measured == [(m, v) for m in ("attention_unet", MONAI_ATTENTION_UNET)
                        for v in variants]
    for record in report["throughput"]:
        assert record["size"] == 64 and record["batch"] == 2
        assert record["ms_per_image"] > 0 and record["images_per_s"] > 0
        assert 0 < record["min_ms_per_image"] <= record["ms_per_image"]
        assert record["peak_memory_mb"] >= 0 and record["params"] > 0
        assert record["repeats"] == len(record["times_s"]) >= 2
    assert report["throughput"][0]["options"] == COMPACT_DEFAULTS["attention_unet"]

    ratios = {(r["variant"], r["reference_variant"]): r for r in report["ratios"]}
    assert set(ratios) == {(v, v) for v in variants} | {(v, "fp32") for v in variants}
    ratio = ratios["fp32+cl", "fp32"]
    by_variant = {(r["model"], r["variant"]): r["ms_per_image"] for r in report["throughput"]}
    assert ratio["ratio"] == pytest.approx(
        by_variant["attention_unet", "fp32+cl"] / by_variant[MONAI_ATTENTION_UNET, "fp32"])

    steps = {r["variant"]: r for r in report["train_steps"]}
    assert set(steps) == {"fp32", auto}
    assert all(r["seconds_per_step"] > 0 and r["batch"] == 2 and r["patch_size"] == 32
               and np.isfinite(r["last_loss"]) for r in steps.values())
    assert len(report["train_speedups"]) == (auto != "fp32")

    groups = {r["group"] for r in report["ops"]}
    assert {"instance norm", "2×2 max-pool", "conv 3×3 16→16"} <= groups
    assert all(0 < r["min_ms"] <= r["ms"] and r["shape"] == [1, 16, 64, 64] for r in report["ops"])

    assert report["end_to_end"]["image"] == [64, 64, 3] and report["end_to_end"]["seconds"] > 0
    predictor, own = report["sliding_windows"]
    assert predictor["via"] == "Predictor" and own["variant"] == f"{auto}+cl"
    for window in (predictor, own):
        assert window["image"] == [128, 128, 3] and window["tiles"] == 9  # 3 × 3 of 64, step 48
        assert window["seconds"] > 0 and window["host_rss_growth_mb"] >= 0
    # progress counted in tiles: 9 tiles in batches of 2 = 5 calls, ending at 9 of 9
    assert own["progress_calls"] == 5 and own["progress_final"] == [9, 9]
    (tune,) = report["finetune"]
    assert tune["model"] == "attention_unet" and tune["steps"] == 1 and tune["seconds"] > 0
    assert all({"target", "value", "limit", "applies", "met"} <= set(t) for t in report["targets"])
    assert "no --real-images" in report["real_skipped"] and "real" not in report

    text = page.read_text()
    begin, end = markers("main")
    assert text.startswith(begin) and text.rstrip().endswith(end)
    assert "Load average" in text and "| attention_unet / monai.AttentionUnet |" in text
    assert "Real-image section skipped" in text and markers("real")[0] not in text


def test_markdown_fills_its_section_and_keeps_the_prose(tmp_path, capsys):
    report = _tiny_report()
    page = tmp_path / "benchmarks.md"
    begin, end = markers("main")
    page.write_text(f"# Benchmarks\n\nprose before\n\n{begin}\nstale table\n{end}\n\n"
                    "prose after\n")
    source = tmp_path / "bench.json"
    write_json(report, source)
    assert main(["bench", "--from-json", str(source), "--markdown", str(page)]) == 0
    text = page.read_text()
    assert "stale table" not in text and "prose before" in text and "prose after" in text
    assert text.count(begin) == 1 and text.count(end) == 1
    assert "| attention_unet / monai.AttentionUnet | 256² | 1 | 0.80× |" in text
    assert "at start 0.10 / 0.20 / 0.30" in text  # the load average is on the page
    assert "attnseg bench --sizes 256" in text  # and the command that measured it
    write_markdown(report, page, section="extra")  # another section is appended, once
    write_markdown(report, page, section="extra")
    assert page.read_text().count(markers("extra")[0]) == 1
    page.write_text(f"{begin}\nno end marker\n")
    with pytest.raises(ValueError, match="unbalanced"):
        write_markdown(report, page)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["bench", "--from-json", str(bad)]) == 1
    assert "not an `attnseg bench --json` report" in capsys.readouterr().err


def _tiny_report() -> dict:
    """A hand-made report: two networks, two variants, one setting."""
    def record(model, variant, ms):
        return {"model": model, "variant": variant, "precision": variant.split("+")[0],
                "source": "monai" if model.startswith("monai") else "napari_attnseg",
                "params": 2e6, "gflops_256": 6.0, "size": 256, "batch": 1, "ms_per_image": ms,
                "images_per_s": 1000 / ms, "min_ms_per_image": ms, "peak_memory_mb": 10.0}

    throughput = [record("attention_unet", "fp32", 80.0), record("attention_unet", "bf16+cl", 50.0),
                  record(MONAI_ATTENTION_UNET, "fp32", 100.0),
                  record(MONAI_ATTENTION_UNET, "bf16+cl", 90.0)]
    return {
        "command": "attnseg bench --sizes 256", "started": "2026-01-01 00:00:00 +0000",
        "machine": {"device": "cpu", "device_name": "test CPU", "cpu_count": 2, "usable_cpus": 2,
                    "torch": "2.x", "torch_threads": 2, "monai": "1.x",
                    "memory_measure": "RSS"},
        "precision": "bf16", "variants": ["fp32", "bf16+cl"], "baseline_variant": "fp32",
        "library_variant": "bf16+cl", "settings": {"batch_sizes": [1]},
        "load_average": {"start": [0.1, 0.2, 0.3], "end": [0.4, 0.5, 0.6]}, "seconds": 12.0,
        "throughput": throughput, "ratios": throughput_ratios(throughput, baseline="fp32"),
        "train_steps": [
            {"model": "unet", "variant": "fp32", "seconds_per_step": 0.2, "batch": 8,
             "patch_size": 128, "loss": "unified_focal"},
            {"model": "unet", "variant": "bf16", "seconds_per_step": 0.1, "batch": 8,
             "patch_size": 128, "loss": "unified_focal"}],
        "train_speedups": [{"model": "unet", "variant": "bf16", "baseline": "fp32",
                            "speedup": 2.0}],
        "targets": [],
    }


def test_variant_specs():
    cpu = torch.device("cpu")
    variant = parse_variant("fp32+cl+no_grad", cpu)
    assert (variant.precision, variant.channels_last, variant.no_grad) == ("fp32", True, True)
    assert variant.name == "fp32+cl+no_grad" and variant.dtype is None
    assert parse_variant("bf16", cpu).dtype == torch.bfloat16
    assert parse_variant("auto+cl", cpu, auto="fp32").name == "fp32+cl"
    # auto resolves like everywhere else in the package, and duplicates collapse
    auto = resolve_precision(torch.device("cpu"))
    assert [v.name for v in parse_variants(["fp32", "auto", "fp32"], cpu)] == \
        list(dict.fromkeys(["fp32", auto]))
    for bad in ("fp64", "fp32+cl+cl", "fp32+turbo", ""):
        with pytest.raises(ValueError, match="variant"):
            parse_variant(bad, cpu)
    with pytest.raises(ValueError, match="variant"):
        BenchSettings(variants=["fp32+fast"])


def test_variants_prepare_the_model_as_named():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    cpu = torch.device("cpu")
    fused = prepare_model(model, parse_variant("fp32+fuse", cpu))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(1, 3, 8, 8)
    with running(parse_variant("fp32", cpu), cpu):
        assert torch.is_inference_mode_enabled()
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-5)
    with running(parse_variant("fp32+no_grad", cpu), cpu):
        assert not torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    with pytest.raises(RuntimeError, match="no batch norm"):
        prepare_model(torch.nn.Conv2d(3, 4, 3), parse_variant("fp32+fuse", cpu))
    cl = prepare_model(torch.nn.Conv2d(3, 4, 3), parse_variant("fp32+cl", cpu))
    assert cl.weight.is_contiguous(memory_format=torch.channels_last)
    assert prepare_input(x, parse_variant("fp32+cl", cpu)).is_contiguous(
        memory_format=torch.channels_last)


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
    # with variants: same-variant ratios, and each of ours against the reference baseline
    records = [{"model": m, "variant": v, "size": 256, "batch": 1, "ms_per_image": ms}
               for m, v, ms in [("attention_unet", "fp32", 30.0), ("attention_unet", "bf16", 15.0),
                                (MONAI_ATTENTION_UNET, "fp32", 20.0),
                                (MONAI_ATTENTION_UNET, "bf16", 25.0)]]
    ratios = {(r["variant"], r["reference_variant"]): r["ratio"]
              for r in throughput_ratios(records, baseline="fp32")}
    assert ratios == {("fp32", "fp32"): 1.5, ("bf16", "bf16"): 0.6, ("bf16", "fp32"): 0.75}


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
    ratio = {"ours": "attention_unet", "reference": MONAI_ATTENTION_UNET, "size": 512, "batch": 8}
    report = {
        "settings": {"batch_sizes": [1, 8]}, "baseline_variant": "fp32",
        "library_variant": "bf16+cl",
        "end_to_end": {"image": [512, 512, 3], "seconds": 1.2},
        "sliding_windows": [{"image": [4096, 4096, 3], "host_rss_growth_mb": 900.0,
                             "seconds": 75.0, "via": "Predictor", "variant": "auto"}],
        "throughput": [{"model": "unet", "source": "napari_attnseg", "size": 512, "batch": 8,
                        "images_per_s": 3.0, "variant": "bf16+cl"}],
        "ratios": [{**ratio, "variant": "fp32", "reference_variant": "fp32", "ratio": 0.9},
                   {**ratio, "variant": "bf16+cl", "reference_variant": "fp32", "ratio": 0.7}],
    }
    targets = evaluate_targets(report, torch.device("cpu"))
    by_text = {t["target"]: t for t in targets}

    def find(*words):
        (match,) = [t for text, t in by_text.items() if all(w in text for w in words)]
        return match

    assert find("end to end")["applies"] and find("end to end")["met"]
    assert find("memory growth")["applies"] and find("memory growth")["met"]
    assert find("<= 60 s")["applies"] and not find("<= 60 s")["met"]
    assert not find("images/s")["applies"] and not find("images/s")["met"]
    assert find("<= 1.0", "CPU")["applies"] and find("<= 1.0", "CPU")["met"]
    assert not find("<= 1.5", "GPU")["applies"]
    faster = find("faster than")
    assert faster["applies"] and not faster["met"] and faster["value"] == pytest.approx(1 / 0.7)
    on_gpu = evaluate_targets(report, torch.device("cuda"))
    assert [t["target"] for t in on_gpu if t["applies"]] == [
        t["target"] for t in targets if "GPU" in t["target"] or "H100" in t["target"]]


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


@pytest.mark.slow
def test_gpu_check_dry_run_on_the_cpu(tmp_path):
    """scripts/gpu_check.sh runs every step at toy size on a CPU and writes its JSON + log."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parents[1]
    out = tmp_path / "gpu_check"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(root / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        ["bash", str(root / "scripts" / "gpu_check.sh"), "--device", "cpu", "--dry-run",
         "--out", str(out), "--python", sys.executable],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((out / "gpu_check.json").read_text())
    assert result["ok"] and result["dry_run"] and result["device"] == "cpu"
    steps = [s["step"] for s in result["steps"]]
    assert steps == ["machine", "cuda_tests", "bench", "train_smoke"]
    tests = result["cuda_tests"]
    if not torch.cuda.is_available():  # collected, all skipped cleanly
        assert tests["tests"] > 0 and tests["skipped"] == tests["tests"]
    assert result["bench"]["ratios"] and (out / "train" / "unet.nuclei.smoke.safetensors").exists()
    assert "gpu_check: all steps passed" in (out / "gpu_check.log").read_text()


def test_the_busy_note_discounts_the_benchmark_s_own_threads():
    from napari_attnseg.benchmark.machine import busy_note

    report = _tiny_report()  # 2 CPUs, 2 torch threads
    report["load_average"] = {"start": [0.3, 1.3, 2.0], "end": [1.9, 1.8, 1.8]}
    assert busy_note(report) == ""  # an idle machine, loaded by this run alone
    report["load_average"]["end"] = [3.5, 2.0, 1.9]  # 1.5 beyond its own 2 threads
    assert "other processes compete" in busy_note(report)
    report["load_average"] = {"start": [1.2, 1.0, 1.0], "end": [1.9, 1.8, 1.8]}
    assert "up to 1.9" in busy_note(report)  # busy before it began


# -- the real-image section ---------------------------------------------------
def _nuclei_pair(shape, centres, *, background=8, colour=False, grey_file=False, seed=0):
    """A dark image with bright discs (nuclei) at ``centres`` and its labels (ids 5, 10, ...)."""
    from skimage.draw import disk

    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint16)
    for i, centre in enumerate(centres):
        labels[disk(centre, 6, shape=shape)] = 5 * (i + 1)  # ids need not be consecutive
    grey = np.where(labels > 0, 180, background) + rng.integers(0, 6, shape)
    image = np.repeat(grey[..., None], 3, axis=-1).astype(np.uint8)
    if colour:  # a stained, bright image: not fluorescence-like
        image = np.clip(image.astype(int) + [200, 120, 160], 0, 255).astype(np.uint8)
    return (image[..., 0] if grey_file else image), labels


def _nuclei_folder(root, pairs):
    """``root/images`` and ``root/labels`` holding ``{name: (image, labels)}`` as PNG."""
    from napari_attnseg.data.io import write_image, write_mask

    for name, (image, labels) in pairs.items():
        write_image(root / "images" / f"{name}.png", image)
        write_mask(root / "labels" / f"{name}.png", labels.astype(np.uint16))
    return root / "images", root / "labels"


def test_mosaic_packs_fluorescence_images_row_by_row(tmp_path):
    from napari_attnseg.benchmark import build_mosaic
    from napari_attnseg.benchmark import real

    pairs = {
        "dsb_a": _nuclei_pair((40, 60), [(12, 12), (20, 40), (30, 20)]),
        "dsb_b": _nuclei_pair((50, 50), [(15, 15), (35, 35)], seed=1),
        "dsb_c": _nuclei_pair((30, 30), [(15, 15)], colour=True),  # stained: left out
        "dsb_d": _nuclei_pair((70, 30), [(10, 15), (60, 15)], grey_file=True, seed=2),
        "monuseg_e": _nuclei_pair((30, 30), [(15, 15)]),  # not DSB: never read
    }
    images, labels = _nuclei_folder(tmp_path, pairs)
    mosaic = build_mosaic(images, labels, size=96)
    assert mosaic.image.shape == (96, 96, 3) and mosaic.image.dtype == np.uint8
    assert mosaic.labels.shape == (96, 96) and mosaic.labels.dtype == np.int32
    # shelf 1: a at (0, 0); b does not fit beside it: shelf 2 at y 40 holds b, then d, whose
    # 70 rows are cropped to the 56 left
    placed = [(t["name"], t["y"], t["x"], t["height"], t["width"], t["cropped"])
              for t in mosaic.tiles]
    assert placed == [("dsb_a.png", 0, 0, 40, 60, False), ("dsb_b.png", 40, 0, 50, 50, False),
                      ("dsb_d.png", 40, 50, 56, 30, True)]
    assert mosaic.skipped == ["dsb_c.png"]
    # each image's objects keep ids of their own: 1..N over the mosaic, one per source object
    ids = np.unique(mosaic.labels)
    assert list(ids) == list(range(mosaic.objects + 1)) and mosaic.objects == 3 + 2 + 2
    seen = set()
    for tile in mosaic.tiles:
        source_image, source_labels = pairs[tile["name"][:-4]]
        region = np.s_[tile["y"]:tile["y"] + tile["height"], tile["x"]:tile["x"] + tile["width"]]
        piece = source_labels[:tile["height"], :tile["width"]]
        np.testing.assert_array_equal(mosaic.labels[region] > 0, piece > 0)
        rgb = source_image if source_image.ndim == 3 else np.repeat(source_image[..., None], 3, -1)
        # each image stretched to its own percentiles before it is pasted
        np.testing.assert_array_equal(mosaic.image[region],
                                      real._stretched(rgb)[:tile["height"], :tile["width"]])
        tile_ids = set(np.unique(mosaic.labels[region])) - {0}
        assert len(tile_ids) == len(set(np.unique(piece)) - {0}) and not tile_ids & seen
        seen |= tile_ids
    # nothing pasted: zero background; the same folders give the same mosaic
    assert not mosaic.image[:40, 60:].any() and not mosaic.labels[90:, :50].any()
    again = build_mosaic(images, labels, size=96)
    np.testing.assert_array_equal(again.image, mosaic.image)
    np.testing.assert_array_equal(again.labels, mosaic.labels)
    assert build_mosaic(images, size=96).labels_dir == labels  # default: the sibling labels/
    summary = mosaic.summary()
    assert summary["tiles"] == 3 and summary["cropped"] == 1 and summary["objects"] == 7


def test_real_image_folders_are_checked_with_clear_errors(tmp_path, capsys):
    from napari_attnseg.benchmark import build_mosaic

    missing = tmp_path / "no_such_images"
    assert main(["bench", "--only-real", "--real-images", str(missing), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "--real-images" in err
    assert main(["bench", "--only-real", "--quiet"]) == 1
    assert "--only-real needs --real-images" in capsys.readouterr().err
    images, labels = _nuclei_folder(tmp_path, {"dsb_a": _nuclei_pair((32, 32), [(16, 16)])})
    with pytest.raises(FileNotFoundError, match="--real-labels"):
        build_mosaic(images, tmp_path / "no_labels", size=32)
    (labels / "dsb_a.png").unlink()
    with pytest.raises(FileNotFoundError, match="no labels for dsb_a.png"):
        build_mosaic(images, labels, size=32)
    bright = _nuclei_folder(tmp_path / "bright",
                            {"dsb_x": _nuclei_pair((32, 32), [(16, 16)], colour=True)})[0]
    with pytest.raises(ValueError, match="fluorescence-like"):
        build_mosaic(bright, size=32)


@pytest.mark.slow
def test_real_section_end_to_end_on_a_tiny_mosaic(tmp_path, capsys, restore_threads):
    """--only-real: the default nuclei model on a 256² mosaic, MONAI, noise and a crop."""
    centres = [(20, 20), (20, 60), (20, 100), (60, 40), (60, 90), (100, 20), (100, 70),
               (100, 110)]
    pairs = {f"dsb_{i}": _nuclei_pair((128, 128), centres, seed=i) for i in range(4)}
    images, labels = _nuclei_folder(tmp_path, pairs)
    target, page = tmp_path / "bench.json", tmp_path / "page.md"
    begin, end = markers("main")
    page.write_text(f"{begin}\nthe main tables\n{end}\n")
    code = main([
        "bench", "--only-real", "--device", "cpu", "--threads", "1",
        "--real-images", str(images), "--real-labels", str(labels), "--real-size", "256",
        "--real-crop", "128", "--real-repeats", "1", "--repeats", "1",
        "--json", str(target), "--markdown", str(page), "--quiet",
    ])
    assert code == 0
    assert "Real image end to end" in capsys.readouterr().out
    report = json.loads(target.read_text())
    assert not any(report.get(k) for k in ("throughput", "end_to_end", "sliding_windows",
                                           "train_steps", "finetune", "ops"))
    real = report["real"]
    assert set(real["load_average"]) == {"start", "end"} and real["rounds"] == 1
    assert real["mosaic"]["size"] == [256, 256, 3] and real["mosaic"]["tiles"] == 4
    assert real["mosaic"]["objects"] == 32 and real["model"] == "nuclei"
    assert real["predictor"]["instances"] and real["predictor"]["diameter"] == "auto"
    for run in ("ours", "monai", "noise", "crop"):
        assert real[run]["seconds"] > 0 and real[run]["repeats"] == len(real[run]["times_s"])
    for run in ("ours", "crop"):
        for score in ("dice", "ap50", "mean_ap"):
            assert 0.0 <= real[run][score] <= 1.0
        assert real[run]["true_objects"] == (32 if run == "ours" else 8)
    assert real["ours"]["dice"] > 0.5  # bright discs on black: the nuclei model finds them
    assert real["crop"]["size"] == [128, 128, 3] and real["noise"]["objects"] >= 0
    assert real["monai"]["roi_size"] == 512 and real["monai"]["sw_batch_size"] == 4
    assert real["ours_over_monai"] == pytest.approx(
        real["ours"]["seconds"] / real["monai"]["seconds"])
    assert real["noise_over_real"] == pytest.approx(
        real["noise"]["seconds"] / real["ours"]["seconds"])
    (crop_target,) = [t for t in report["targets"] if t.get("section") == "real"]
    assert not crop_target["applies"]  # a 128² crop: for reference only
    # --only-real fills the page's `real` section alone and leaves the main one as it was
    text = page.read_text()
    real_begin, real_end = markers("real")
    assert "the main tables" in text and text.count(real_begin) == text.count(real_end) == 1
    section = text[text.index(real_begin):text.index(real_end)]
    assert "Load average" in section and "| run | input | s | / MONAI |" in section
    assert "uniform noise" in section and "--only-real" in section

    # a full report: main tables to their section, the real-image ones to their own
    full = _tiny_report() | {"real": real, "targets": report["targets"]}
    write_markdown(full, page)
    text = page.read_text()
    main_part = text[text.index(begin):text.index(end)]
    assert "the main tables" not in text and "Real image" not in main_part
    assert "issues 3, 13 and 22" not in main_part
    assert "Real image end to end" in text[text.index(real_begin):]
    with pytest.raises(ValueError, match="holds the real-image tables"):
        write_markdown(_tiny_report(), page, section="real")


def test_real_settings():
    assert (BenchSettings.quick().real_size, BenchSettings.quick().real_repeats) == (1024, 1)
    assert (BenchSettings().real_size, BenchSettings().real_crop) == (2048, 512)
    with pytest.raises(ValueError, match="real_repeats"):
        BenchSettings(real_repeats=0)
    from napari_attnseg.benchmark.runner import real_skip_reason

    assert "--no-real" in real_skip_reason(BenchSettings(real=False, real_images="x"))
    assert "no --real-images" in real_skip_reason(BenchSettings())

