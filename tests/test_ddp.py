"""Training under torchrun (PyTorch DDP): one model from rank 0, resumable, same as one process.

The end-to-end test starts ``torchrun --nproc-per-node 2 -m napari_attnseg.cli train`` with
gloo on the CPU in a subprocess (killed with its workers after a time limit, so it never hangs);
the others run in this process, with a one-process gloo group where a group is needed.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import torch.distributed as dist
from skimage.draw import disk

import napari_attnseg
from napari_attnseg.cli import main
from napari_attnseg.models import create_model, save_model
from napari_attnseg.training import Trainer
from napari_attnseg.training.distributed import (
    TIMEOUT_ENV,
    Processes,
    backend_for,
    process_group,
    timeout_seconds,
)

from .test_training import config, disc_samples, tiny

ARCH = ["--arch", "unet", "--option", "width=4", "--option", "depth=2", "--in-channels", "1"]
#: a whole-image, augmentation-free, fp32 SGD run: nothing random but the sample order
DETERMINISTIC = [
    "--patch-size", "0", "--set", "augment=null", "--set", "optimizer=sgd", "--lr", "0.05",
    "--loss", "ce", "--precision", "fp32", "--device", "cpu", "--quiet",
]  # fmt: skip
#: seconds one torchrun command may take on a loaded 2-core machine before it is killed
TORCHRUN_LIMIT_S = 300


@pytest.fixture
def folders(tmp_path):
    """Four 64² training and two validation images of bright discs, with 0/255 masks."""
    rng = np.random.default_rng(0)
    paths = {k: tmp_path / k for k in ("images", "masks", "val_images", "val_masks")}
    for path in paths.values():
        path.mkdir()
    for i in range(6):
        mask = np.zeros((64, 64), np.uint8)
        mask[disk(tuple(rng.integers(16, 48, 2)), int(rng.integers(6, 12)), shape=mask.shape)] = 255
        image = (mask * 0.5 + rng.normal(60, 15, mask.shape)).clip(0, 255).astype(np.uint8)
        prefix = "val_" if i >= 4 else ""
        tifffile.imwrite(paths[prefix + "images"] / f"img{i}.tif", image)
        tifffile.imwrite(paths[prefix + "masks"] / f"img{i}.tif", mask)
    return paths


def data_flags(folders):
    return [f"--{key.replace('_', '-')}={path}" for key, path in folders.items()]


def torchrun(args, *, processes=2):
    """``torchrun --standalone --nproc-per-node N -m napari_attnseg.cli ARGS`` -> (rc, out, err).

    The workers import this checkout's package; the whole process group is killed
    if the command outlives :data:`TORCHRUN_LIMIT_S`.
    """
    env = dict(os.environ, OMP_NUM_THREADS="1", **{TIMEOUT_ENV: "60"})
    source = str(Path(napari_attnseg.__file__).parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc-per-node={processes}", "-m", "napari_attnseg.cli", *args]
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=TORCHRUN_LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"torchrun did not finish in {TORCHRUN_LIMIT_S} s:\n{out}\n{err[-4000:]}")
    return proc.returncode, out, err


def last_checkpoint(run_dir):
    return torch.load(Path(run_dir) / "last.ckpt", map_location="cpu", weights_only=True)


@pytest.mark.slow  # two torchrun commands: three interpreters that import torch each (~45 s)
def test_torchrun_trains_one_model_resumes_and_matches_one_process(folders, tmp_path):
    out = tmp_path / "ddp" / "m"
    rc, stdout, stderr = torchrun(
        ["train", *ARCH, *DETERMINISTIC, *data_flags(folders), "--epochs", "2", "--batch-size", "2",
         "--out", str(out)]
    )  # fmt: skip
    assert rc == 0, stderr[-4000:]
    assert stdout.count("saved ") == 1  # rank 0 alone reports
    # exactly one model, from rank 0, and the run folder beside it
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.json", "m.run", "m.safetensors"]
    run_dir = out.parent / "m.run"
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "best.json", "best.safetensors", "last.ckpt", "run.json",
    ]  # fmt: skip
    card = json.loads((out.parent / "m.json").read_text())
    assert card["training"]["distributed"] == {
        "world_size": 2, "backend": "gloo", "batch_size_per_process": 2, "global_batch_size": 4,
    }  # fmt: skip
    first = card["training"]["history"]
    assert [e["epoch"] for e in first] == [1, 2]
    run = json.loads((run_dir / "run.json").read_text())
    assert (run["world_size"], run["status"]) == (2, "finished: completed")

    # the run folder's checkpoint resumes under torchrun: epoch 3 follows epochs 1-2
    rc, stdout, stderr = torchrun(["train", "--resume", str(run_dir), "--epochs", "3", "--quiet"])
    assert rc == 0, stderr[-4000:]
    resumed = json.loads((out.parent / "m.json").read_text())["training"]["history"]
    assert resumed[:2] == first and resumed[2]["epoch"] == 3
    ddp = last_checkpoint(run_dir)
    assert ddp["epoch"] == 2 and ddp["world_size"] == 2

    # one process with batch 4 takes the same steps as 2 processes with batch 2 each: every
    # step covers all four images, and DDP's gradient (the mean of the two processes' mean
    # gradients, equal pixel counts) is the one-process mean gradient. Only the order of the
    # float32 sums differs (observed: 1.2e-7), so 1e-5 leaves room, while a wrong shard or
    # summed gradients move weights by ~1e-2.
    single = tmp_path / "single" / "m"
    assert main(["train", *ARCH, *DETERMINISTIC, *data_flags(folders), "--epochs", "3",
                 "--batch-size", "4", "--out", str(single)]) == 0  # fmt: skip
    one = last_checkpoint(single.parent / "m.run")
    assert one["model"].keys() == ddp["model"].keys()
    for key, weights in one["model"].items():
        torch.testing.assert_close(ddp["model"][key], weights, rtol=0, atol=1e-5, msg=key)
    for a, b in zip(one["history"]["epochs"], ddp["history"]["epochs"], strict=True):
        for key in ("train_loss", "val_loss", "val_dice", "val_precision", "val_sensitivity"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key


# -- in this process ---------------------------------------------------------
@pytest.fixture
def one_process_group():
    """A gloo group of one process: the DDP code paths without starting processes."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_finetune_in_a_process_group_records_it_and_trains_through_ddp(
    folders, tmp_path, one_process_group, monkeypatch
):
    base = create_model("unet", in_channels=1, n_classes=1, width=4, depth=2)
    save_model(base, tmp_path / "base")
    wrapped = []
    original = Processes.wrap
    monkeypatch.setattr(
        Processes, "wrap", lambda self, model: wrapped.append(original(self, model)) or wrapped[-1]
    )
    args = ["finetune", "--model", str(tmp_path / "base"), *DETERMINISTIC, *data_flags(folders)]
    assert main([*args, "--epochs", "1", "--batch-size", "2", "--out", str(tmp_path / "t")]) == 0
    assert [type(w).__name__ for w in wrapped] == ["DistributedDataParallel"]
    card = json.loads((tmp_path / "t.json").read_text())
    assert card["metadata"]["finetune"]["distributed"] == {
        "world_size": 1, "backend": "gloo", "batch_size_per_process": 2, "global_batch_size": 2,
    }  # fmt: skip
    assert dist.is_initialized()  # a group set up by the caller is left to the caller


def test_one_process_records_itself_and_has_no_sampler():
    trainer = Trainer(tiny(), config(epochs=1), disc_samples(4), disc_samples(2, seed=1))
    assert trainer.sampler is None and trainer.network is trainer.model
    assert trainer.processes.record(4) == {
        "world_size": 1, "backend": None, "batch_size_per_process": 4, "global_batch_size": 4,
    }  # fmt: skip


def test_processes_share_every_epoch_and_draw_their_own_patches():
    data = list(range(10))
    ranks = [Processes(world_size=2, rank=r, backend="gloo") for r in (0, 1)]
    samplers = [p.sampler(data, seed=3) for p in ranks]
    for epoch in (0, 1):
        for sampler in samplers:
            sampler.set_epoch(epoch)
        shares = [list(sampler) for sampler in samplers]
        assert sorted(shares[0] + shares[1]) == data  # a partition of the epoch
    assert ranks[0].seed(7) == Processes().seed(7) == 7  # rank 0 keeps one process's stream
    assert ranks[1].seed(7) != 7
    assert [i for i, _ in ranks[1].shard("abcde")] == [1, 3]


@pytest.mark.slow
def test_resume_refuses_another_number_of_processes(tmp_path):
    trainer = Trainer(tiny(), config(epochs=1), disc_samples(4), checkpoint_dir=tmp_path)
    trainer.fit()
    state = last_checkpoint(tmp_path)
    assert state["world_size"] == 1
    torch.save({**state, "world_size": 2}, tmp_path / "last.ckpt")
    again = Trainer(tiny(), config(epochs=2), disc_samples(4), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="under torchrun with 2 processes"):
        again.resume()


@pytest.fixture
def under_torchrun(monkeypatch):
    """The environment torchrun gives rank 0 of 2 processes on one machine."""
    for name, value in dict(WORLD_SIZE=2, RANK=0, LOCAL_RANK=0, LOCAL_WORLD_SIZE=2).items():
        monkeypatch.setenv(name, str(value))


def test_backend_follows_the_device(under_torchrun, monkeypatch):
    assert backend_for("cpu") == ("gloo", torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert backend_for("auto") == ("gloo", torch.device("cpu"))
    with pytest.raises(ValueError, match="sees none; train on the CPU with --device cpu"):
        backend_for("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert backend_for("auto") == ("nccl", torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="2 processes on this machine but it has 1 CUDA GPU"):
        backend_for("cuda")
    with pytest.raises(ValueError, match="--device cuda:1 cannot be used under torchrun"):
        backend_for("cuda:1")


def run_train_expecting_one_line(folders, tmp_path, capsys, device="cpu"):
    args = ["train", *ARCH, *DETERMINISTIC, *data_flags(folders), "--out", str(tmp_path / "m")]
    args[args.index("--device") + 1] = device
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    # refused before init_process_group, which would wait for the other process
    assert not dist.is_initialized() and not (tmp_path / "m.run").exists()
    return err


def test_nccl_without_cuda_is_one_line(folders, tmp_path, under_torchrun, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    err = run_train_expecting_one_line(folders, tmp_path, capsys, device="cuda")
    assert err.startswith("attnseg train: error: ") and "no CUDA GPU" in err


def test_more_processes_than_gpus_is_one_line(
    folders, tmp_path, under_torchrun, capsys, monkeypatch
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    err = run_train_expecting_one_line(folders, tmp_path, capsys, device="cuda")
    assert err.endswith("has 1 CUDA GPU(s); give --nproc-per-node 1 or fewer (one process per GPU)")


def test_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    assert timeout_seconds() == 1800
    monkeypatch.setenv(TIMEOUT_ENV, "90")
    assert timeout_seconds() == 90
    monkeypatch.setenv(TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match="ATTNSEG_DIST_TIMEOUT must be a number of seconds"):
        timeout_seconds()


def test_without_torchrun_nothing_is_set_up(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with process_group("auto") as processes:
        assert processes == Processes() and not dist.is_initialized()
