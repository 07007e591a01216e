"""Re-quantize a bundled model from its own weights, where its checkpoints are
gone, and rewrite its model card.

The int8 file is dequantized into an fp32 graph (fercli.export.int8.dequantize: the same
weights the int8 file holds), quantized again with today's export (7-bit weights, which give
the same integers on every CPU), scored on the validation hold-out and on the test split
(with and without flip TTA) on this CPU, and bundled with its card. The previous card's test
metrics are kept in the new card, labelled with what they were.

    .venv/bin/python scripts/requantize_bundled_model.py --name accurate --data ../shared/fer2013
"""

import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "scripts"))

from bundle_model import (  # noqa: E402  (scripts/bundle_model.py)
    MAX_BYTES,
    bundle_args,
    summary,
    validation_accuracy,
    with_test_metrics,
)
from model_card import write_card  # noqa: E402  (scripts/model_card.py)

from fercli.evaluate.evaluation import evaluate  # noqa: E402
from fercli.export import requantize_onnx  # noqa: E402
from fercli.export.saturation import check_saturation  # noqa: E402
from fercli.util import cpu_name  # noqa: E402


def main() -> None:
    args, card = bundle_args(__doc__)
    source_file = args.file
    with tempfile.TemporaryDirectory(prefix="fercli-requantize-") as tmp:
        source = Path(tmp) / "previous.onnx"
        shutil.copyfile(source_file, source)
        sha = hashlib.sha256(source.read_bytes()).hexdigest()
        fp32 = Path(tmp) / "fp32.onnx"  # the dequantized starting point, scored as well
        report = requantize_onnx(
            source, Path(tmp) / "int8.onnx", data_root=args.data, fp32_output=fp32
        )
        scores = {}
        for precision, path in (("fp32", fp32), ("int8", report.output)):
            for tta in (False, True):
                result = evaluate(path, args.data, "test", tta=tta, device="cpu")
                scores[precision + ("_tta" if tta else "")] = summary(result)
        if report.size > MAX_BYTES:
            raise SystemExit(f"{report.size / 1e6:.1f} MB is over the package limit.")
        products = check_saturation(report.output)
        validation = validation_accuracy(fp32, {"config": card["training"]["config"]}, args.data)
        with_test_metrics(report.output, source_file, scores["int8"])

    quant = report.quant
    previous = card["metrics"]
    card["metrics"] = {
        "test": scores,
        "test_split": previous["test_split"],
        "validation_accuracy": validation,
        "measured_on": cpu_name(),
    }
    card["quantization"] = {
        "weights": "int8 per channel, 7 bits (|q| <= 64)",
        "activations": "uint8, ranges calibrated on 1000 training images (min/max)",
        "saturation_check": f"{len(products)} integer products, largest pair sum "
        f"{max(p.pair_max for p in products)} <= 32767",
        "requantized_from": {
            "file_sha256": sha,
            "how": "the previous bundle's int8 weights, dequantized to fp32 (its checkpoints "
            "were not at hand), then quantized again with 7-bit weights",
            "command": f"scripts/requantize_bundled_model.py --name {args.name} --data {args.data}",
            "previous_test_metrics": previous["test"],
            "previous_measured_on": previous.get(
                "measured_on", "an Intel Xeon with AVX-512 VNNI (not recorded then)"
            ),
        },
    }
    loss = scores["fp32"]["accuracy"] - scores["int8"]["accuracy"]
    card["shipped"].update(
        {
            "reason": f"int8 changes the test accuracy by {-loss * 100:+.2f} points against the "
            f"dequantized fp32 graph, agrees with it on {quant.agreement:.2%} of the test images "
            f"(export-onnx requires 99%), runs {quant.speed_int8 / quant.speed_fp32:.1f}x faster "
            f"(model only, {cpu_name()}) and takes {report.size / 1e6:.1f} MB against "
            f"{quant.size_fp32 / 1e6:.1f} MB: int8 is the better trade",
            "size_mb": round(report.size / 1e6, 2),
            "int8_top1_agreement": quant.agreement,
            "int8_speedup_model_only": round(quant.speed_int8 / quant.speed_fp32, 2),
        }
    )
    write_card(args.dest, card)
    print(json.dumps(card["metrics"], indent=2))


if __name__ == "__main__":
    main()
