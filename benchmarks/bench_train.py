"""Training throughput: fercli's whole training loop against a bare forward/backward/step of
the same model, side by side in one run.

(a) bare: the model's forward, loss, backward and optimizer step on one random batch, over
    and over (no data, no augmentation, no bookkeeping);
(b) loop: fercli.train.train_epoch over real training images (FER-2013 when present,
    else synthetic faces): batch gathering, the augmenters, normalization, the schedule, the
    statistics, with the progress bar off.

Both use the trainer's settings: its optimizer and loss, the autocast dtype it picks
(fercli.train.amp_dtype), channels-last memory, torch's thread count. Each repeat times
`--steps` batches of (a) and then of (b); the script prints the medians and the ratio
(b)/(a), which issue 4 wants at 0.75 or more.

    .venv/bin/python benchmarks/bench_train.py                 # seed-cnn, batch 128
    .venv/bin/python benchmarks/bench_train.py --model vgg --steps 10
    .venv/bin/python benchmarks/bench_train.py --model vgg --steps 10 --compare-amp

`--compare-amp` times only (a), in fp32 and in bf16 autocast (fp16 on CUDA), interleaved:
the measurement behind `--amp auto`.

`--processes N` times whole `fercli train` runs instead: one process using every core against
`torchrun --standalone --nproc-per-node N -m fercli train` (DDP, the cores divided among the
processes), interleaved, the same global batch; each run's figure is the median training
images/s of its epochs after the first (history.csv: the loop alone, validation not counted).
Without --data it trains on synthetic faces (600 a class), since epochs of FER-2013 take long.

    .venv/bin/python benchmarks/bench_train.py --processes 2 --epochs 3 --repeats 3

Every mode prints the CPU's model name line first.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from fercli import registry
from fercli.progress import settings
from fercli.train import (
    Data,
    Parts,
    TrainConfig,
    amp_dtype,
    build_augmenters,
    default_threads,
    flush_denormals,
    load_data,
    make_augment_generator,
    make_optimizer,
    make_scheduler,
    resolve_device,
    train_epoch,
)

REPO = Path(__file__).resolve().parent.parent


def dataset_root(explicit: str | None) -> tuple[Path, str]:
    path = Path(explicit or os.environ.get("FERCLI_FER2013") or REPO.parent / "shared/fer2013")
    if (path / "train").is_dir():
        return path, f"training images of {path}"
    from fercli.data.synth import make_synthetic

    synth = Path(tempfile.mkdtemp(prefix="fercli-bench-")) / "synth"
    make_synthetic(synth, per_class=600, seed=0)
    return synth, f"synthetic faces (FER-2013 not found at {path})"


def bare_runner(config: TrainConfig, device, dtype, num_classes: int):
    """(a): the same model, optimizer and loss as the trainer, on one random batch."""
    model = registry.create("model", config.model, num_classes=num_classes)
    model = model.to(device).to(memory_format=torch.channels_last).train()
    optimizer = make_optimizer(config, model)
    x = torch.randn(config.batch_size, 1, config.image_size, config.image_size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(num_classes, (config.batch_size,), device=device)

    def run(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            with torch.autocast(
                device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None
            ):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return steps * config.batch_size / (time.perf_counter() - start)

    return run


def loop_runner(config: TrainConfig, data: Data, device, dtype, steps: int, repeats: int):
    """(b): fercli's epoch function over `steps` batches of real images per call."""
    n = steps * config.batch_size
    if len(data.y_train) < n:
        sys.exit(f"only {len(data.y_train)} training images: use fewer --steps")
    part = replace(data, x_train=data.x_train[:n], y_train=data.y_train[:n])
    model = registry.create("model", config.model, num_classes=len(data.classes))
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(config, model)
    # the schedule must last for every call (warm-up included)
    scheduler = make_scheduler(replace(config, num_epochs=repeats + 2), optimizer, steps)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    augmenters = build_augmenters(config)
    generator = torch.Generator().manual_seed(config.seed)
    augment_generator = make_augment_generator(generator, device, config.seed)
    parts = Parts(
        model, optimizer, scheduler, scaler, augmenters, generator, augment_generator, device,
        dtype, None, part.x_train.to(device), part.y_train.to(device),
    )  # fmt: skip
    epoch = 0

    def run(_steps: int) -> float:
        nonlocal epoch
        epoch += 1
        start = time.perf_counter()
        train_epoch(parts, part, config, epoch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return n / (time.perf_counter() - start)

    return run


def compare_amp(config: TrainConfig, device, picked, num_classes: int, args) -> None:
    """(a) in full fp32 against (a) in bf16 autocast, interleaved in each repeat: whether
    bf16 pays on this CPU, and what `--amp auto` picks here."""
    half = torch.float16 if device.type == "cuda" else torch.bfloat16
    runs = {"fp32": bare_runner(config, device, None, num_classes)}
    runs[str(half).split(".")[-1]] = bare_runner(config, device, half, num_classes)
    print(
        f"model {config.model}, batch {config.batch_size}, device {device}, "
        f"{torch.get_num_threads()} threads; --amp auto picks {picked or 'fp32'} here"
    )
    rates = {k: [] for k in runs}
    for run in runs.values():
        run(3)  # warm-up
    for r in range(args.repeats):
        for name, run in runs.items():
            rates[name].append(run(args.steps))
        print(f"repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f} img/s" for k, v in rates.items()))
    (a, rate_a), (b, rate_b) = ((k, statistics.median(v)) for k, v in rates.items())
    print(
        f"median over {args.repeats} x {args.steps} batches: {a} {rate_a:.0f}, {b} {rate_b:.0f} "
        f"images/s; {b}/{a} {rate_b / rate_a:.2f}"
    )


def train_run(args, root: Path, out: Path, processes: int, threads: int) -> tuple[float, str]:
    """One `fercli train` run, alone or under torchrun, with `threads` torch threads a
    process: (median images/s of the epochs after the first, the hardware it recorded)."""
    import csv
    import json

    command = [sys.executable, "-m", "fercli"]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["FERCLI_THREADS"] = str(threads)
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        command += ["--nproc-per-node", str(processes), "-m", "fercli"]
    command += ["-q", "train", str(root), "--model", args.model, "--batch-size"]
    command += [str(args.batch_size), "--augment", args.augment, "--mixup", str(args.mixup)]
    command += ["--epochs", str(args.epochs), "--device", args.device, "--out", str(out)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    rows = list(csv.DictReader((out / "history.csv").open()))
    rates = [float(r["images_per_s"]) for r in rows[1:] or rows]
    hardware = json.loads((out / "metrics.json").read_text())["hardware"]
    return statistics.median(rates), hardware


def compare_processes(args) -> None:
    """torchrun with --processes N (the cores divided among them) against one process with
    every core and against one process with one process's share, whole runs interleaved."""
    if args.data:
        root, source = Path(args.data), f"training images of {args.data}"
    else:
        from fercli.data.synth import make_synthetic

        root = Path(tempfile.mkdtemp(prefix="fercli-bench-")) / "synth"
        make_synthetic(root, per_class=600, seed=0)
        source = "synthetic faces, 600 a class"
    from fercli.train.distributed import World, threads_per_process

    cores = threads_per_process(World())  # the cores this process may use
    share = max(1, cores // args.processes)
    runs = {  # name: (processes, threads a process)
        f"1 process, {cores} threads": (1, cores),
        f"1 process, {share} thread{'s' if share > 1 else ''}": (1, share),
        f"torchrun, {args.processes} x {share} thread{'s' if share > 1 else ''}": (
            args.processes,
            share,
        ),
    }
    print(
        f"model {args.model}, global batch {args.batch_size}, augment {args.augment}, "
        f"{args.epochs} epochs a run, {cores} cores; {source}"
    )
    work = Path(tempfile.mkdtemp(prefix="fercli-bench-runs-"))
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(args.repeats):
        for i, (name, (processes, threads)) in enumerate(runs.items()):
            rate, hardware = train_run(args, root, work / f"run-{i}-{r}", processes, threads)
            rates[name].append(rate)
            print(f"repeat {r + 1}: {name}: {rate:.0f} img/s ({hardware})")
    medians = {name: statistics.median(v) for name, v in rates.items()}
    print(f"median over {args.repeats} runs each (training images/s):")
    for name, rate in medians.items():
        print(f"  {name:32} {rate:8.0f}")
    *single, distributed = medians.values()
    print(f"  ratio torchrun / best single process {distributed / max(single):6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="seed-cnn")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--augment", default=TrainConfig.augment, help="as `fercli train`")
    parser.add_argument("--mixup", type=float, default=0.0)
    parser.add_argument("--steps", type=int, default=30, help="batches per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", help="dataset root (default: FER-2013 if found)")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--compare-amp",
        action="store_true",
        help="only (a), in fp32 and in bf16 autocast, interleaved: the check behind --amp auto",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="compare whole `fercli train` runs: 1 process against torchrun with this many",
    )
    parser.add_argument("--epochs", type=int, default=3, help="epochs a run (--processes)")
    args = parser.parse_args()
    from fercli.util import cpu_description

    print(cpu_description(), flush=True)  # first: every figure names its CPU
    if args.processes > 1:
        return compare_processes(args)

    flush_denormals()  # as the trainer does, before torch starts its threads
    settings["quiet"] = True  # no progress bar in the timed loop
    if os.environ.get("FERCLI_THREADS"):  # as the trainer does
        torch.set_num_threads(default_threads())
    root, source = dataset_root(args.data)
    config = TrainConfig(
        data_dir=str(root),
        model=args.model,
        batch_size=args.batch_size,
        augment=args.augment,
        mixup=args.mixup,
        device=args.device,
    )
    device = resolve_device(config.device)
    dtype = amp_dtype(config, device)
    data = load_data(config)
    if args.compare_amp:
        return compare_amp(config, device, dtype, len(data.classes), args)
    bare = bare_runner(config, device, dtype, len(data.classes))
    loop = loop_runner(config, data, device, dtype, args.steps, args.repeats)

    print(
        f"model {config.model}, batch {config.batch_size}, device {device}, "
        f"{torch.get_num_threads()} threads, autocast {dtype or 'off'}, "
        f"augment {config.augment or 'none'}, mixup {config.mixup}; {source}"
    )
    bare(3)  # warm-up: first calls pick kernels and allocate
    loop(args.steps)
    rates = {"bare": [], "loop": []}
    for r in range(args.repeats):
        rates["bare"].append(bare(args.steps))
        rates["loop"].append(loop(args.steps))
        print(
            f"repeat {r + 1}: bare {rates['bare'][-1]:.0f} img/s, "
            f"loop {rates['loop'][-1]:.0f} img/s"
        )
    bare_rate, loop_rate = (statistics.median(rates[k]) for k in ("bare", "loop"))
    print(f"median over {args.repeats} x {args.steps} batches:")
    print(f"  (a) bare forward/backward/step  {bare_rate:8.0f} images/s")
    print(f"  (b) full training loop          {loop_rate:8.0f} images/s")
    print(f"  ratio (b)/(a)                   {loop_rate / bare_rate:8.2f}  (target >= 0.75)")


if __name__ == "__main__":
    main()
