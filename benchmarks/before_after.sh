#!/bin/bash
# Speed of predict-dir, clean and train in two checkouts of fercli, alternated, each run a
# whole process as a user runs it, with their outputs compared (issue #26: the layout work
# must keep the speed within noise and every output byte):
#   git worktree add --detach /tmp/fercli-old REV_BEFORE
#   git worktree add --detach /tmp/fercli-new REV_AFTER
#   benchmarks/before_after.sh /tmp/fercli-old /tmp/fercli-new [../shared/fer2013]
# Prints one line per run (command, which tree, seconds) and whether the outputs agree.
set -u
OLD=$(realpath "$1") NEW=$(realpath "$2") FER=$(realpath "${3:-../shared/fer2013}")
PY=$(realpath -s "${PYTHON:-$(dirname "$0")/../.tox/py/bin/python}")
[ -x "$PY" ] || { echo "no Python at $PY: set PYTHON"; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
grep -m1 'model name' /proc/cpuinfo
cd "$WORK" || exit 1
PYTHONPATH=$NEW "$PY" -m fercli -q synth synth --per-class 60 --seed 0 >/dev/null
timed() {  # timed NAME TREE COMMAND...
  local name=$1 tree=$2 start end
  shift 2
  start=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  end=$(date +%s.%N)
  echo "$name $tree $(echo "$end - $start" | bc)"
}
for round in 1 2 3; do
  for tree in old new; do
    root=$OLD; [ "$tree" = new ] && root=$NEW
    export PYTHONPATH=$root
    timed predict-dir $tree "$PY" -m fercli -q predict-dir "$FER/test" -o "p-$tree.csv"
    timed clean $tree sh -c "'$PY' -m fercli -q clean '$FER' --json > c-$tree.json"
    rm -rf "run-$tree"
    timed train $tree "$PY" -m fercli -q train synth --model seed-cnn --epochs 2 --seed 0 --out "run-$tree"
  done
done
cmp -s p-old.csv p-new.csv && echo "predict-dir rows identical" || echo "predict-dir rows DIFFER"
python3 - <<'PY'
import csv, json

def strip(x):
    if isinstance(x, dict):
        return {k: strip(v) for k, v in x.items() if k != "seconds"}
    return [strip(v) for v in x] if isinstance(x, list) else x

old, new = (json.load(open(f"c-{t}.json")) for t in ("old", "new"))
print("clean reports identical but for seconds:", strip(old) == strip(new))
timing = {"images_per_s", "seconds"}
rows = [[{k: v for k, v in r.items() if k not in timing}
         for r in csv.DictReader(open(f"run-{t}/history.csv"))] for t in ("old", "new")]
print("train histories identical but for timing:", rows[0] == rows[1])
PY
