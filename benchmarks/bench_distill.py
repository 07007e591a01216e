"""What the teacher costs in training: images/s of `fercli train` steps of a student without
a teacher, with the teacher's cached targets (`--teacher-targets cached`, the default), and
with the teacher run by onnxruntime on every augmented batch (`--teacher-targets batch`,
training's own teacher.BatchTeacher), interleaved.

Each step is the trainer's: a batch gathered from the uint8 images, the augmenters,
normalization, forward, loss, backward, SGD step, on torch's threads (FERCLI_THREADS); the
teacher runs on as many onnxruntime threads. Caching costs one pass of the teacher over the
training images and their mirror images before the first epoch (fercli train records its
images/s in metrics.json); the per-batch teacher costs a pass every epoch.

    FERCLI_THREADS=1 .venv/bin/python benchmarks/bench_distill.py --data ../shared/fer2013
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from fercli import registry
from fercli.train import NORMALIZATION, TrainConfig, build_augmenters, default_threads
from fercli.train.data import load_data
from fercli.train.teacher import BatchTeacher, distillation_loss


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/fer2013")
    parser.add_argument("--model", default="resnet-narrow")
    parser.add_argument("--teacher", default="fercli/bundled_models/accurate/fercli-accurate.onnx")
    parser.add_argument("--augment", default="flip,rotate,crop,jitter")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    from fercli.util import cpu_description

    print(cpu_description(), flush=True)  # first: every figure names its CPU
    threads = default_threads()
    torch.set_num_threads(threads)
    config = TrainConfig(data_dir=args.data, model=args.model, augment=args.augment)
    data = load_data(config)
    teacher = BatchTeacher(args.teacher, data.classes, config.image_size, NORMALIZATION, threads)
    model = registry.create("model", args.model, num_classes=len(data.classes))
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    augmenters = build_augmenters(config)
    generator = torch.Generator().manual_seed(0)
    cached = torch.randn(len(data.y_train), len(data.classes)).log_softmax(1)

    def step(mode):
        idx = torch.randint(len(data.y_train), (args.batch_size,), generator=generator)
        xb = data.x_train[idx].float().div_(255.0)
        for aug in augmenters:
            xb = aug(xb, generator)
        xb = ((xb - NORMALIZATION["mean"]) / NORMALIZATION["std"]).contiguous()
        if mode == "per-batch teacher":
            targets = teacher(xb)
        else:
            targets = cached[idx]
        logits = model(xb.contiguous(memory_format=torch.channels_last))
        loss = F.cross_entropy(logits, data.y_train[idx])
        if mode != "no teacher":
            loss = 0.5 * loss + 0.5 * distillation_loss(logits, targets, 4.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    modes = ["no teacher", "cached targets", "per-batch teacher"]
    rates = {m: [] for m in modes}
    for mode in modes:
        step(mode)  # warm-up
    for _ in range(args.repeats):
        for mode in modes:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step(mode)
            rates[mode].append(args.steps * args.batch_size / (time.perf_counter() - t0))
    print(
        f"{args.model}, teacher {teacher.model.describe()}, {threads} thread(s), batch "
        f"{args.batch_size}, {args.repeats} x {args.steps} steps, median images/s:"
    )
    base = statistics.median(rates["no teacher"])
    for mode in modes:
        rate = statistics.median(rates[mode])
        print(f"  {mode:18s} {rate:7.1f}  ({rate / base:.2f} of no teacher)")


if __name__ == "__main__":
    main()
