#!/usr/bin/env bash
# Train fercli's `accurate` bundled model from its recipe and bundle it: one run of recipes/default.toml
# per seed, and the runs exported as one ensemble (scripts/bundle_model.py). Running
# it again resumes a run that was cut and skips the finished ones.
#   scripts/train_accurate_model.sh          # seeds 0-6; the 5 best together are bundled
#   scripts/train_accurate_model.sh 0 1 2 3 4 5 6 7    # other seeds
# Data: $FERCLI_FER2013, else ../shared/fer2013.
# Each run takes about 5 minutes on an NVIDIA H200 (four at once); on a 2-core CPU, hours.
set -euo pipefail
cd "$(dirname "$0")/.."

data=${FERCLI_FER2013:-../shared/fer2013}
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(0 1 2 3 4 5 6)
runs=()
for seed in "${seeds[@]}"; do
    run=runs/default-s$seed
    if [ -f "$run/last.pt" ]; then
        .venv/bin/fercli train --resume "$run"
    else
        .venv/bin/fercli train --config recipes/default.toml "$data" --seed "$seed" --out "$run"
    fi
    runs+=("$run")
done
.venv/bin/python scripts/bundle_model.py "${runs[@]}" --data "$data" \
    --recipe recipes/default.toml --members 5 --name accurate \
    --script scripts/train_accurate_model.sh
