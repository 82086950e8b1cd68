#!/usr/bin/env bash
# The Penn Treebank table in one command: the exact-EM baselines (configs/unigrams-ptb.toml, the mixture
# of unigrams, and hmm-ptb.toml, the categorical HMM), the LSTM language model and the four sentence-VAE
# variants (configs/text-lm-ptb.toml, text-vae-ptb{,-freebits,-cyclical,-aggressive}.toml) trained on
# ptb.train.txt (validation: ptb.valid.txt), then the exact models, and the neural ones kept after 1, 5
# and 20 epochs and the best by validation, scored on ptb.test.txt by the literature's protocol
# (../shared/data/ptb/README.md: NLL per sentence, by importance sampling with 500 samples for the VAEs,
# perplexity over words and <eos>, KL, active units), and one table written to RUNS/ptb-table.md.
#
#   examples/ptb.sh                  # everything (a day or more on 2 cores)
#   PTB_STEPS=20000 examples/ptb.sh  # at most 20,000 training steps per model this time; run it
#                                    # again to continue (every step is resumed or skipped when done)
#
# Environment: EMVAE (the binary; default target/release/emvae), PTB (the corpus directory; default
# ../shared/data/ptb, which the configs name), RUNS (default runs), PTB_IW (importance samples of the
# VAEs' test NLL; default 500), PTB_MODELS (which neural configs; default all five), PTB_EXACT (which
# exact-EM configs; default both); an empty PTB_MODELS or PTB_EXACT runs none; PTB_SCORE_BACKEND (the
# backend of the neural models' test scoring, e.g. wgpu with a GPU and a `--features wgpu` build: an
# IW-500 scoring took 94-102 s on an H200 against 27 minutes on 2 cores; default the run's).
set -euo pipefail
cd "$(dirname "$0")/.."
emvae=${EMVAE:-target/release/emvae}
ptb=${PTB:-../shared/data/ptb}
runs=${RUNS:-runs}
iw=${PTB_IW:-500}
models=${PTB_MODELS-text-lm-ptb text-vae-ptb text-vae-ptb-freebits text-vae-ptb-cyclical text-vae-ptb-aggressive}
exact=${PTB_EXACT-unigrams-ptb hmm-ptb}
for f in ptb.train.txt ptb.valid.txt ptb.test.txt; do
  if [ ! -f "$ptb/$f" ]; then
    echo "examples/ptb.sh: $ptb/$f not found (the README says where to get the Penn Treebank)" >&2
    exit 2
  fi
done
if [ ! -x "$emvae" ]; then
  echo "examples/ptb.sh: $emvae not found: cargo build --release first (or set EMVAE)" >&2
  exit 2
fi
ptb_abs=$(cd "$ptb" && pwd)
mkdir -p "$runs"
stop=()
if [ -n "${PTB_STEPS:-}" ]; then stop=(--stop-after "$PTB_STEPS"); fi
score=()
if [ -n "${PTB_SCORE_BACKEND:-}" ]; then score=(--backend "$PTB_SCORE_BACKEND"); fi

# A number from one line of pretty-printed JSON ("key": value).
field() { sed -n "s/^ *\"$2\": *\([-0-9.eE+]*\),\{0,1\}$/\1/p" "$1" | head -n 1; }
# Training seconds up to and including epoch $2 (all epochs without $2) from metrics.jsonl.
seconds() {
  awk -v last="${2:-0}" '
    { e = $0; sub(/.*"epoch":/, "", e); sub(/,.*/, "", e)
      s = $0; sub(/.*"seconds":/, "", s); sub(/,.*/, "", s)
      if (last == 0 || e + 0 <= last + 0) total += s }
    END { printf "%.0f", total }' "$1"
}

# The config with the corpus where it is (the shipped configs name ../shared/data/ptb).
local_config() {
  sed "s#\"\.\./\.\./shared/data/ptb/#\"$ptb_abs/#" "configs/$1.toml" >"$runs/$1.toml"
}

# Trains config $1 into $runs/$1: skipped when its final model $2 is there, resumed when its checkpoint $3
# is; the remaining arguments go to `emvae train`.
train_run() {
  local name=$1 model=$2 checkpoint=$3
  shift 3
  local run="$runs/$name"
  if [ -f "$run/$model" ]; then
    echo "== $name: trained"
  elif [ -f "$run/$checkpoint" ]; then
    echo "== $name: resuming"
    "$emvae" train --out "$run" --resume "$@"
  else
    echo "== $name: training"
    local_config "$name"
    "$emvae" train --config "$runs/$name.toml" --out "$run" "$@"
  fi
}

# The exact-EM baselines: EM to convergence (or max_iter), then the exact test NLL.
for name in $exact; do
  run="$runs/$name"
  train_run "$name" model.json checkpoint.json
  out="$run/test.json"
  if [ ! -f "$out" ]; then
    echo "== $name: scoring on the test split (exact)"
    "$emvae" eval --run "$run" --data "$ptb/ptb.test.txt" >"$out.part"
    mv "$out.part" "$out"
  fi
done

for name in $models; do
  run="$runs/$name"
  train_run "$name" model.bpk checkpoint.bin "${stop[@]}"
  k=$iw
  case $name in text-lm-*) k=1 ;; esac # exact: the language model has no latent code
  for budget in 1 5 20 best; do
    if [ "$budget" = best ]; then
      [ -f "$run/model.bpk" ] || continue
      which=(--best)
    else
      [ -f "$run/model_epoch$budget.bpk" ] || continue
      which=(--epoch "$budget")
    fi
    out="$run/test-$budget.json"
    [ -f "$out" ] && continue
    echo "== $name: scoring the model of $budget on the test split (IW-$k)"
    "$emvae" eval --run "$run" "${which[@]}" "${score[@]}" --data "$ptb/ptb.test.txt" --iw-samples "$k" >"$out.part"
    mv "$out.part" "$out"
  done
done

table="$runs/ptb-table.md"
{
  echo "| model | budget | test NLL (nats) | perplexity | KL | active units | MI | training time |"
  echo "|---|---|---|---|---|---|---|---|"
  for name in $exact; do
    run="$runs/$name"
    out="$run/test.json"
    [ -f "$out" ] || continue
    printf '| %s | end (%s iterations) | %.2f (exact) | %.1f | - | - | - | %.1f min |\n' "$name" \
      "$(field "$run/summary.json" iterations_total)" "$(field "$out" nll_per_sentence)" \
      "$(field "$out" perplexity)" "$(awk -v s="$(field "$run/summary.json" seconds)" 'BEGIN { print s / 60 }')"
  done
  for name in $models; do
    run="$runs/$name"
    for budget in 1 5 20 best; do
      out="$run/test-$budget.json"
      [ -f "$out" ] || continue
      if [ "$budget" = best ]; then
        label="end (best of $(wc -l <"$run/metrics.jsonl") epochs)"
        secs=$(seconds "$run/metrics.jsonl")
      else
        label="$budget epoch$([ "$budget" = 1 ] || echo s)"
        secs=$(seconds "$run/metrics.jsonl" "$budget")
      fi
      how="IW-$(field "$out" iw_samples)" kl=$(printf '%.2f' "$(field "$out" kl)")
      au=$(field "$out" active_units) mi=$(printf '%.2f' "$(field "$out" mutual_information)")
      case $name in text-lm-*) how=exact kl="-" au="-" mi="-" ;; esac # no latent code
      printf '| %s | %s | %.2f (%s) | %.1f | %s | %s | %s | %s min |\n' "$name" "$label" \
        "$(field "$out" iw_nll)" "$how" "$(field "$out" perplexity)" "$kl" "$au" "$mi" "$((secs / 60))"
    done
  done
} >"$table.part"
mv "$table.part" "$table"
cat "$table"
