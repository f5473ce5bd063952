#!/usr/bin/env bash
# End-to-end build of the default WebDMS model on one GPU, in one command of at most ~10 minutes:
# tokenizer -> data -> pretraining (wall-clock budgeted) -> DMS retrofit -> held-out evaluation.
# Expects .train/ from retrofit/prep_corpus.py. Results go to $OUT (split into <16 MB pieces):
#   log.txt, small.tar.gz (tokenizer, configs, logs, metrics, held-out eval data),
#   pre.safetensors.part-*, dms.safetensors.part-*  (reassemble with `cat`)
# Knobs (env): TOTAL_BUDGET (s, whole script), DMS_BUDGET, EVAL_RESERVE, SCALE (synthetic data),
#   MODEL_CONFIG (JSON), PRE_BATCH, PRE_LR, SEQ, DMS_BATCH, DMS_LR, WINDOW, TARGET_CR, VOCAB, COMPILE.
set -euo pipefail
START=$(date +%s)
TOTAL_BUDGET=${TOTAL_BUDGET:-565}
DMS_BUDGET=${DMS_BUDGET:-100}
EVAL_RESERVE=${EVAL_RESERVE:-60}
SCALE=${SCALE:-1.0}
VOCAB=${VOCAB:-8192}
SEQ=${SEQ:-1024}
PRE_BATCH=${PRE_BATCH:-128}
PRE_LR=${PRE_LR:-1.5e-3}
DMS_BATCH=${DMS_BATCH:-16}
DMS_LR=${DMS_LR:-2e-4}
WINDOW=${WINDOW:-64}
TARGET_CR=${TARGET_CR:-8}
COMPILE=${COMPILE:---compile}
MODEL_CONFIG=${MODEL_CONFIG:-'{"hidden_size":384,"intermediate_size":896,"num_hidden_layers":8,"num_attention_heads":8,"num_key_value_heads":2,"head_dim":64,"rope_theta":10000.0,"max_position_embeddings":1024,"tie_word_embeddings":true}'}
OUT=${OUT:?set OUT}
W=${WORK:-/tmp/webdms_work}
R=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$W" "$OUT"
export PYTHONUNBUFFERED=1
elapsed() { echo $(( $(date +%s) - START )); }

python3 -c 'import torch, sys; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "", "python", sys.version.split()[0])'
echo "[run] tokenizer t=$(elapsed)"
python3 "$R/tokenizer_train.py" --corpus .train/corpus.jsonl.gz --vocab "$VOCAB" --out "$W/tok" --model_max_length "$SEQ"
echo "[run] data t=$(elapsed)"
python3 "$R/build_data.py" --data .train --tokenizer "$W/tok" --out "$W/data" --scale "$SCALE"

pack_small() {
  mkdir -p "$W/small"
  cp "$W/tok/"* "$W/small/" 2>/dev/null || true
  cp .train/provenance.json "$W/data/data_stats.json" "$W/data/eval_tasks.jsonl" "$W/data/val_text.bin" "$W/data/val_synth.bin" "$W/small/" 2>/dev/null || true
  for d in pre dms; do
    [ -d "$W/$d" ] && for f in config.json generation_config.json train_log.json dms_log.json; do
      [ -f "$W/$d/$f" ] && cp "$W/$d/$f" "$W/small/$d.$f"; done
  done
  [ -f "$W/metrics.json" ] && cp "$W/metrics.json" "$W/small/"
  [ -f "$W/fsdp_smoke.txt" ] && cp "$W/fsdp_smoke.txt" "$W/small/"
  tar -czf "$OUT/small.tar.gz" -C "$W/small" .
}
pack_small

PRE_BUDGET=$(( TOTAL_BUDGET - $(elapsed) - DMS_BUDGET - EVAL_RESERVE - 30 ))
echo "[run] pretrain t=$(elapsed) budget=${PRE_BUDGET}s"
python3 "$R/train.py" pretrain --data "$W/data" --tokenizer "$W/tok" --out "$W/pre" --model_config "$MODEL_CONFIG" \
  --batch "$PRE_BATCH" --seq "$SEQ" --lr "$PRE_LR" --warmup 100 --time_budget "$PRE_BUDGET" $COMPILE \
  --log_every 50 --eval_every 500 --eval_batches 4 --export_bf16
split -n 2 -d "$W/pre/model.safetensors" "$OUT/pre.safetensors.part-"
pack_small

echo "[run] dms t=$(elapsed)"
python3 "$R/train.py" dms --init "$W/pre" --data "$W/data" --out "$W/dms" --window "$WINDOW" --target_cr "$TARGET_CR" \
  --steps 5000 --ramp_frac 0.75 --batch "$DMS_BATCH" --seq "$SEQ" --lr "$DMS_LR" --time_budget "$DMS_BUDGET" \
  --log_every 25 --export_bf16
split -n 2 -d "$W/dms/model.safetensors" "$OUT/dms.safetensors.part-"
pack_small

echo "[run] eval t=$(elapsed)"
python3 "$R/evaluate.py" --model "$W/pre" --model "$W/dms" --data "$W/data" --out "$W/metrics.json" --per_task 200
pack_small

# optional: one-process FSDP smoke of the DMS step (only if time is left)
if [ $(( TOTAL_BUDGET - $(elapsed) )) -gt 45 ] && command -v torchrun >/dev/null && python3 -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "[run] fsdp smoke t=$(elapsed)"
  timeout 40 torchrun --standalone --nproc_per_node 1 "$R/train.py" dms --fsdp --init "$W/pre" --data "$W/data" --out "$W/dms_fsdp" \
    --window "$WINDOW" --target_cr 2 --steps 6 --ramp_steps 3 --batch 4 --seq 512 --log_every 1 > "$W/fsdp_smoke.txt" 2>&1 \
    && echo "[run] fsdp smoke ok" || echo "[run] fsdp smoke FAILED (see fsdp_smoke.txt)"
  tail -5 "$W/fsdp_smoke.txt" || true
  pack_small
fi
echo "[run] done t=$(elapsed)"
