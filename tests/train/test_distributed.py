"""Training under torchrun: fercli's options reach fercli, each epoch's global batches are
dealt out exactly, validation sees every image once, and a 2-process run on the synthetic
faces matches a single process, stops together and resumes with another process count."""

import json
import os
import subprocess
import sys

import click
import pytest
import torch

from fercli.train import TrainConfig, train
from fercli.train.checkpoint import load_checkpoint
from fercli.train.distributed import World, gather_rows, local_batches, shard

QUICK = ["--model", "seed-cnn", "--optimizer", "adamw", "--lr", "2e-3", "--batch-size", "32"]
QUICK += ["--augment", "flip", "--epochs", "4"]


def every_option() -> list[str]:
    """Each option of `fercli` and `fercli train`, with a value where it takes one."""
    from fercli.cli import cli
    from fercli.commands.train import train_command

    args = ["-h", "--help"]
    for param in [*cli.params, *train_command.params]:
        if isinstance(param, click.Option):
            value = [] if param.is_flag else ["1"]
            for opt in param.opts + param.secondary_opts:
                args += [opt, *value]
    return args


@pytest.mark.parametrize("front", [["--standalone"], ["--nnodes", "1", "--rdzv-backend", "c10d"]])
def test_torchrun_passes_every_fercli_option_to_fercli(front):
    from torch.distributed.run import get_args_parser

    options = every_option()
    assert "--max-minutes" in options and "--plugins-dir" in options
    fercli_args = [*options[:6], "train", "DATA", *options]
    args = get_args_parser().parse_args(
        [*front, "--nproc-per-node", "2", "-m", "fercli", *fercli_args]
    )
    assert args.module and args.training_script == "fercli"
    assert args.training_script_args == fercli_args
    assert args.nproc_per_node == "2"


@pytest.mark.parametrize("size", [1, 2, 3, 4])
@pytest.mark.parametrize("pool, batch", [(261, 32), (33, 32), (100, 10), (5, 32), (97, 7)])
def test_every_global_batch_is_the_same_whatever_the_process_count(size, pool, batch):
    """Global batch k is the same slice of the sampler's order for any number of processes;
    every image is in the epoch (the padding only repeats some); no process steps empty."""

    def global_batches(size):
        plans = [local_batches(pool, batch, World(size, r, r, size), 5, 2) for r in range(size)]
        assert len({len(p) for p in plans}) == 1  # the same number of steps everywhere
        steps = []
        for k in range(len(plans[0])):
            parts = [plan[k] for plan in plans]
            assert all(len(pos) > 0 for pos, _ in parts)
            assert len({n for _, n in parts}) == 1 and sum(len(p) for p, _ in parts) == parts[0][1]
            steps.append(sorted(torch.cat([p for p, _ in parts]).tolist()))
        return steps

    one, many = global_batches(1), global_batches(size)
    seen = sum(many, [])
    assert set(seen) == set(range(pool)) and len(seen) - pool < size
    assert len(many) in (len(one), len(one) - 1)
    for k in range(len(many) - 1):
        assert many[k] == one[k]


@pytest.mark.parametrize("size", [1, 2, 3])
def test_validation_shards_cover_every_image_once(size):
    count = 29
    parts = [list(range(count))[shard(count, World(size, r))] for r in range(size)]
    assert sum(parts, []) == list(range(count))
    whole = torch.arange(count, dtype=torch.float32)[:, None]
    assert torch.equal(gather_rows(whole, count, World(), "cpu"), whole)


def torchrun(nproc: int, *args, timeout=120) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node N -m fercli ARGS`, one thread per process."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", str(nproc), "-m", "fercli", *map(str, args)]
    env = {**os.environ, "FERCLI_THREADS": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def history(run):
    return load_checkpoint(run / "last.pt")["history"]


def without_timing(rows):
    return [{k: v for k, v in row.items() if k not in ("images_per_s", "seconds")} for row in rows]


@pytest.mark.slow  # torchrun starts processes
def test_two_processes_train_like_one_stop_together_and_resume(
    synth_root, tmp_path, one_torch_thread
):
    single = tmp_path / "single"
    config = TrainConfig(
        data_dir=str(synth_root), model="seed-cnn", optimizer="adamw", learning_rate=2e-3,
        batch_size=32, num_epochs=4, augment="flip", out=str(single),
    )  # fmt: skip
    train(config)

    both = tmp_path / "both"
    proc = torchrun(2, "train", synth_root, *QUICK, "--out", both)
    # one process speaks and writes
    assert proc.stderr.count("Training seed-cnn on") == 1
    assert proc.stderr.count("Validation (best epoch)") == 1
    assert not list(both.glob(".*.tmp"))
    metrics = json.loads((both / "metrics.json").read_text())
    assert "2 processes x 1 thread" in metrics["hardware"]
    assert metrics["epochs_run"] == 4
    matrix = metrics["val_report"]["confusion_matrix"]
    assert sum(map(sum, matrix)) == metrics["data"]["val_images"]  # each image counted once
    # the same global batch of 32: the same learning, to the noise of other random streams.
    # That noise is large in 4 short epochs: runs of seeds 0-3, one process or two, ended
    # with train losses of 1.48 to 1.65 and validation losses of 1.45 to 1.69; the single
    # and 2-process runs of seed 0 differ by up to 0.17 (epoch 3).
    a, b = history(single), history(both)
    assert b[-1]["train_loss"] < b[0]["train_loss"] - 0.2
    for row_a, row_b in zip(a, b):
        assert row_b["lr"] == pytest.approx(row_a["lr"])  # the same schedule, step for step
        assert row_b["train_loss"] == pytest.approx(row_a["train_loss"], abs=0.25)
        assert row_b["val_loss"] == pytest.approx(row_a["val_loss"], abs=0.3)

    # rank 0's clock stops both processes after epoch 1 (--max-minutes); the run resumes
    # with 2 processes, exactly where it stopped, then with 1 (another process count: the
    # sampler's global batches are the same for any, test_every_global_batch_...), which
    # the time limit the run keeps stops after epoch 3
    split = tmp_path / "split"
    torchrun(2, "train", synth_root, *QUICK, "--out", split, "--max-minutes", "0.0001")
    assert without_timing(history(split)) == without_timing(b[:1])
    proc = torchrun(2, "train", "--resume", split)
    assert proc.stderr.count("Resuming") == 1
    assert without_timing(history(split)) == without_timing(b[:2])
    train(None, resume=str(split))
    state = load_checkpoint(split / "last.pt")
    assert [row["epoch"] for row in state["history"]] == [1, 2, 3]
    assert "processes" not in state["hardware"]


@pytest.mark.parametrize("rank, says", [("0", True), ("1", False)])
def test_bad_input_is_one_line_from_rank_0(rank, says, synth_root, run_cli, monkeypatch):
    monkeypatch.setenv("RANK", rank)
    result = run_cli("train", synth_root, "--model", "resnet-huge", "--epochs", "1")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert ("Error: unknown model 'resnet-huge'" in result.stderr) == says


def test_more_processes_than_gpus_is_one_clear_line(monkeypatch):
    from fercli.errors import FercliError
    from fercli.train import distributed

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(FercliError, match=r"2 processes on this machine but 1 CUDA GPU"):
        distributed.start(World(2, 1, 1, 2), torch.device("cuda"))


def test_each_process_gets_its_share_of_the_cores(monkeypatch):
    from fercli.train.distributed import threads_per_process

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert threads_per_process(World(4, 0, 0, 4)) == 4  # 4 processes here, 16 cores
    assert threads_per_process(World(8, 5, 1, 2)) == 8  # 2 of 8 on this machine
    assert threads_per_process(World(32, 0, 0, 32)) == 1


@pytest.mark.slow  # torchrun starts processes
def test_two_processes_keep_one_average_of_the_weights(synth_root, tmp_path):
    """--ema under torchrun: each process averages the same (synchronised) weights; the kept
    average is rank 0's, and it is what best.pt holds and validation scored."""
    from train_helpers import validation_accuracy

    run = tmp_path / "ema"
    torchrun(2, "train", synth_root, *QUICK[:-1], "2", "--ema", "0.9", "--out", run)
    last, best = load_checkpoint(run / "last.pt"), load_checkpoint(run / "best.pt")
    steps = -(-json.loads((run / "metrics.json").read_text())["data"]["train_images"] // 32)
    assert last["ema"]["updates"] == 2 * steps  # one update per global step
    assert all("val_acc_live" in row for row in last["history"])
    accuracy = validation_accuracy(best, synth_root)
    assert accuracy == pytest.approx(best["metrics"]["val_acc"])
