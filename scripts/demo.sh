#!/usr/bin/env bash
# The whole fercli pipeline on synthetic faces, from a fresh checkout: installs fercli into
# .venv, draws data/synth, cleans it, trains a small model briefly, evaluates it, exports it
# to ONNX and predicts a folder with it. A few minutes on a 2-core CPU; no download.
# Running it again reuses what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade 'pip>=25.1'  # for --group (PEP 735)
.venv/bin/pip install --quiet -e '.[train,openvino,video]' --group test tox
fercli=.venv/bin/fercli

# 1. Data: 7 classes of 48x48 cartoon faces, with planted duplicates, blanks and a corrupt file.
$fercli synth data/synth
# 2. Clean: move what the filters flag into data/synth/.fercli-quarantine/ (undo: fercli clean --undo).
$fercli clean data/synth --apply
# 3. Train the seed notebook's CNN for a few epochs (validation: a hold-out of train).
$fercli train data/synth --model seed-cnn --optimizer adamw --lr 0.002 --batch-size 32 --augment flip \
    --epochs 8 --out runs/demo --overwrite
# 4. Score the best checkpoint on the test split.
$fercli evaluate runs/demo/best.pt data/synth --split test
# 5. Export to ONNX (checked against PyTorch) and predict a folder with onnxruntime.
$fercli export-onnx runs/demo/best.pt -o exports/demo.onnx
$fercli predict-dir data/synth/test --model exports/demo.onnx -o runs/demo/predictions.csv --eval
echo "Done: predictions in runs/demo/predictions.csv, model in exports/demo.onnx."
