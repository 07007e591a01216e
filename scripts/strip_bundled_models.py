"""Remove the exporter's build traces from a bundled model (torch writes a stack trace with
the exporting machine's file paths, and other text, on every node: fercli.export.metadata.
strip_build_traces), make the card's paths relative to the repository, and check that the
stripped file computes exactly what the old one did: the same probabilities, bit for bit, on
every image of the test split (CPU provider). The file is rewritten atomically and the card
records the sha256 of the file it was stripped from.

    .venv/bin/python scripts/strip_bundled_models.py --name fast --data ../shared/fer2013
"""

import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "scripts"))

from bundle_model import bundle_args  # noqa: E402  (scripts/bundle_model.py)
from model_card import write_card  # noqa: E402  (scripts/model_card.py)

from fercli.data.dataset import load_split  # noqa: E402
from fercli.export.metadata import strip_build_traces  # noqa: E402
from fercli.predict.onnx_model import OnnxModel  # noqa: E402
from fercli.util import atomic_path, cpu_name  # noqa: E402


def relative_paths(value, root: str):
    """The card with every absolute path inside the repository made relative to it."""
    if isinstance(value, dict):
        return {k: relative_paths(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [relative_paths(v, root) for v in value]
    if isinstance(value, str) and value.startswith(root):
        return value[len(root) :]
    return value


def main() -> None:
    args, card = bundle_args(__doc__)
    import numpy as np
    import onnx

    model_file = Path(args.file)
    old_sha = hashlib.sha256(model_file.read_bytes()).hexdigest()
    proto = onnx.load(str(model_file))
    nodes = strip_build_traces(proto)
    test = load_split(args.data, "test")
    old = OnnxModel(model_file, "cpu").predict_proba(test.images)
    with atomic_path(model_file) as tmp:
        onnx.save(proto, str(tmp))
        new = OnnxModel(tmp, "cpu").predict_proba(test.images)
        if not np.array_equal(old, new):
            raise SystemExit(f"{model_file}: the stripped graph computes other values: kept")
    card = relative_paths(card, str(HERE) + "/")
    if nodes:
        card["build_traces_stripped"] = {
            "from_file_sha256": old_sha,
            "nodes": nodes,
            "check": f"identical probabilities on all {len(test.labels):,} test images "
            "(onnxruntime CPU provider)",
            "command": f"scripts/strip_bundled_models.py --name {args.name} --data {args.data}",
            "measured_on": cpu_name(),
        }
    write_card(args.dest, card)
    print(
        f"{model_file}: build traces removed from {nodes} nodes; same probabilities on "
        f"{len(test.labels)} test images"
    )


if __name__ == "__main__":
    main()
