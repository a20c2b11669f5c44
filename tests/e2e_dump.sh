#!/usr/bin/env bash
# e2e_dump.sh: --dump-step on the tiny config is deterministic
# (two runs give identical files), honours --init, and holds every gradient.
set -eu
dcal=$1; src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-dump.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
"$dcal" make-synthetic --out "$tmp/data" --classes 10 --per-class 8 --test-per-class 2 --img 36 >/dev/null
common=(--config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs")
start=$(date +%s%N)
"$dcal" train "${common[@]}" --dump-step "$tmp/a.safetensors" > /dev/null
ms=$(( ($(date +%s%N) - start) / 1000000 )); echo "dump took $ms ms (reported, not asserted: speed belongs in bench/)"
"$dcal" train "${common[@]}" --dump-step "$tmp/b.safetensors" > /dev/null
cmp "$tmp/a.safetensors" "$tmp/b.safetensors" || { echo "FAIL: dump not deterministic"; exit 1; }
[ ! -d "$tmp/runs" ] || { echo "FAIL: --dump-step created a run directory"; exit 1; }
for t in input labels pair sel logits.sa logits.glca logits.pwca ce loss grad.loss_w grad.cls_token \
         grad.blocks.0.attn.qkv.weight grad.glca.0.mlp.fc2.bias grad.glca_head.weight; do
  grep -aq "\"$t\"" "$tmp/a.safetensors" || { echo "FAIL: dump lacks $t"; exit 1; }
done
# --init: the dump's own parameters fed back give the same step, even under another seed's init.
"$dcal" train "${common[@]}" --init "$tmp/a.safetensors" --dump-step "$tmp/c.safetensors" > /dev/null
cmp "$tmp/a.safetensors" "$tmp/c.safetensors" || { echo "FAIL: --init with the same weights changed the step"; exit 1; }
"$dcal" train "${common[@]}" --set train.seed=99 --dump-step "$tmp/d.safetensors" > /dev/null
cmp -s "$tmp/a.safetensors" "$tmp/d.safetensors" && { echo "FAIL: the seed does not change the dump"; exit 1; }

# --max-memory picks the largest micro-batch whose plan fits and keeps the effective batch.
# An impossible budget is refused with the exact need of micro-batch 2 (accumulation 8: its
# table, the gradient sum's three extra gradients (unit_plan checks each term), the CPU's
# attention scratch for train.threads threads, the host data). That need is a budget that picks
# 2 and one byte less none: the plan is exact and the same on every start. The table of
# micro-batch 4 (accumulation 4) is 200-250 KiB more here, of 8 more than 700 KiB: 500 KiB on
# top picks 4, whatever this machine's own bytes.
common+=(--set train.threads=2)
if "$dcal" train "${common[@]}" --max-memory 100K --dump-step "$tmp/m.safetensors" 2> "$tmp/err.txt" >/dev/null; then
  echo "FAIL: an impossible budget was accepted"; exit 1; fi
need=$(sed -nE 's/.*even micro-batch 2 needs [0-9.]+ MiB, ([0-9]+) bytes.*/\1/p' "$tmp/err.txt")
[ -n "$need" ] || { cat "$tmp/err.txt"; exit 1; }
out=$("$dcal" train "${common[@]}" --max-memory "$need" --dump-step "$tmp/m.safetensors" 2>/dev/null)
grep -q "memory plan: micro-batch 2 x accumulation 8" <<<"$out" || { echo "FAIL: --max-memory $need: $out"; exit 1; }
if "$dcal" train "${common[@]}" --max-memory $((need - 1)) --dump-step "$tmp/m.safetensors" >/dev/null 2>&1; then
  echo "FAIL: --max-memory $((need - 1)) accepted, one byte under micro-batch 2's plan"; exit 1; fi
out=$("$dcal" train "${common[@]}" --max-memory $((need + 512000)) --dump-step "$tmp/m.safetensors" 2>/dev/null)
grep -q "memory plan: micro-batch 4 x accumulation 4" <<<"$out" ||
  { echo "FAIL: --max-memory $((need + 512000)): $out"; exit 1; }
echo ok: max-memory
