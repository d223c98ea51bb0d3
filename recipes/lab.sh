#!/usr/bin/env bash
# The model-family lab, end to end (benchmarks/lab/README.md): six families at an equal budget, two extra
# seeds each at 100k images, the standard evaluation (2,000 samples), DDPM's ancestral sampler at 1000 steps
# on 500 samples for both diffusion models, the demonstrations, then the report. Every step resumes or skips
# what is already done, so the script can be run again after an interruption.
#
#   CONJURE_HOME=.cache/conjure bash recipes/lab.sh            # IMAGES=300000 SEED_IMAGES=100000 by default
#
# CPU: one torch thread per process; run two copies of a step list side by side on two cores if you like.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
IMAGES=${IMAGES:-300000}
SEED_IMAGES=${SEED_IMAGES:-100000}
CONJURE=${CONJURE:-.venv/bin/conjure}

evaluated() {   # run dir, images: true when its metrics.json is for a model trained on that many images
  [ -f "$1/metrics.json" ] && python3 -c "import json,sys; sys.exit(json.load(open('$1/metrics.json'))['images_seen'] != $2)"
}

for f in gan vae ddpm ldm flow ar; do
  $CONJURE lab train $f --images $IMAGES
  evaluated runs/lab/$f-seed0 $IMAGES || $CONJURE lab evaluate runs/lab/$f-seed0
done
$CONJURE lab train gan-unstable --images $IMAGES
for f in ddpm ldm; do
  [ -f runs/lab/$f-seed0/metrics.ddpm1000-n500.json ] || \
    $CONJURE lab evaluate runs/lab/$f-seed0 --sampler ddpm --steps 1000 --n 500
done
for d in vae steps denoise collapse; do $CONJURE lab demos $d; done
for s in 1 2; do
  for f in gan vae ddpm ldm flow ar; do
    $CONJURE lab train $f --images $SEED_IMAGES --seed $s
    evaluated runs/lab/$f-seed$s $SEED_IMAGES || $CONJURE lab evaluate runs/lab/$f-seed$s
  done
done
.venv/bin/python benchmarks/lab_sampling.py
$CONJURE lab compare
