"""Fit a bundled model's temperature on its runs' validation hold-out and write it
into the file's metadata and its model card, with the expected calibration error (ECE)
before and after on the hold-out and on the test split (test is only scored, never fitted),
and the card's flip-TTA score again (averaging tempered probabilities can move a near tie).

The hold-out is rebuilt from the card's training configuration (the same 10% of train every
member was validated on), exactly as `fercli export-onnx` does for a checkpoint
(fercli.export.temperature). The file is rewritten atomically; its weights do not change.

    .venv/bin/python scripts/calibrate_bundled_model.py --name accurate --data ../shared/fer2013
"""

import json
import sys
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "scripts"))

from bundle_model import bundle_args  # noqa: E402  (scripts/bundle_model.py)
from model_card import write_card  # noqa: E402  (scripts/model_card.py)

from fercli.data.dataset import load_split  # noqa: E402
from fercli.export.metadata import set_metadata  # noqa: E402
from fercli.export.temperature import calibrate  # noqa: E402
from fercli.metrics.calibration import reliability  # noqa: E402
from fercli.predict.onnx_model import OnnxModel, preprocess, softmax  # noqa: E402
from fercli.util import atomic_path, cpu_name  # noqa: E402


def main() -> None:
    args, card = bundle_args(__doc__)
    import onnx

    model_file = args.file
    model = OnnxModel(model_file, "cpu")
    found = calibrate(model, {"config": card["training"]["config"]}, args.data)
    if found is None:
        raise SystemExit(f"no validation hold-out could be rebuilt from {args.data}")
    test = load_split(args.data, "test", classes=model.info.classes)
    logits = model.logits(preprocess(test.images, model.info))
    t = found.temperature
    test_ece = {
        "before": reliability(softmax(logits), test.labels)["ece"],
        "after": reliability(softmax(logits / t), test.labels)["ece"],
    }

    proto = onnx.load(str(model_file))
    set_metadata(proto, replace(model.info, temperature=t))
    with atomic_path(model_file) as tmp:
        onnx.save(proto, str(tmp))
    # flip TTA averages probabilities, so the temperature can move a near tie: score it again
    from bundle_model import summary

    from fercli.evaluate.evaluation import evaluate

    tta = evaluate(model_file, args.data, "test", tta=True, device="cpu")
    card["metrics"]["test"]["int8_tta"] = summary(tta)
    card["calibration"] = {
        "temperature": t,
        "fitted_on": f"validation hold-out ({found.images} images, {found.source})",
        "ece_validation": {"before": found.ece_before, "after": found.ece_after},
        "ece_test": test_ece,
        "bins": 15,
        "command": f"scripts/calibrate_bundled_model.py --name {args.name} --data {args.data}",
        "measured_on": cpu_name(),
    }
    write_card(args.dest, card)
    print(json.dumps(card["calibration"], indent=2))


if __name__ == "__main__":
    main()
