#!/usr/bin/env bash
# The committed §5 results: every experiment at the full budget, then the figures copied into figures/.
#
#   figures/run_s05_experiments.sh            # all five, in this order
#   figures/run_s05_experiments.sh table1     # only some
#
# Resumable: each experiment writes into experiment-out/<name>/ (not in git). The runs live in one shared
# store, experiment-out/runs, so a rerun skips every finished seed. Experiments that need the same run
# share it: the skip ablation's warped row is Table 1's best row; the landscapes use that row's trained
# seeds; Figure 2's deformable network is a Table 2 row. Seeds run in two processes (EXECUTOR to change).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-experiment-out}
EXECUTOR=${EXECUTOR:-processes:2}
WARPTHEORY=${WARPTHEORY:-warptheory}
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(table1 skip landscape bifurcation table2)
mkdir -p "$OUT/runs" "$OUT/cache"
for name in "${names[@]}"; do
  mkdir -p "$OUT/$name"
  for shared in runs cache; do
    [ -e "$OUT/$name/$shared" ] || ln -s "../$shared" "$OUT/$name/$shared"
  done
  start=$(date +%s)
  "$WARPTHEORY" experiment "$name" --out "$OUT/$name" --executor "$EXECUTOR"
  echo "$name: $(( $(date +%s) - start )) s wall (this invocation)" | tee -a "$OUT/timings.txt"
  for png in "$OUT/$name"/*.png; do
    cp "$png" "figures/s05_$(basename "$png")"
  done
done
