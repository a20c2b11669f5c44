#!/usr/bin/env bash
# train.sh: the whole program on the simulated GPU. sim_dcal is dcal's main linked with the
# CUDA backend running in the simulator, so `dcal train --set train.device=cuda` goes the
# way it goes on a GPU: images, labels and PWCA pairs up the copy stream from page-locked
# buffers, the step on the backend, the loss read once per step, AdamW, eval, checkpoint.
# A tiny DCAL run (3 steps of 16 images; the micro-batch the device's memory gives) must
#  1. finish on device cuda at precision auto (= bf16), saying so in its header;
#  2. give the same bits with its steps recorded as CUDA graphs (DCAL_CUDA_GRAPHS=1: step 1
#     warms up, step 2 records, step 3 replays): steps.tsv and the final weights;
#     Both with train.update_in_backward=false: an update inside backward is never recorded;
#  2b. with AdamW inside backward (train.update_in_backward, at the picked accumulation 1): the
#     same steps.tsv and final weights as op by op;
#  3. start where the CPU starts: step 1's loss within 2e-2 of the CPU run's (bf16 GEMMs), the
#     CPU run at the micro-batch the GPU run picked (PWCA pairs images within a micro-batch).
set -u
sim=$1; cpu=$2; src=$3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-simtrain.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
hash_of() { sed -nE 's/.*final weights sha256 ([0-9a-f]{64}).*/\1/p' "$1"; }
"$cpu" make-synthetic --out "$tmp/data" --classes 10 --per-class 5 --test-per-class 1 --img 36 >/dev/null || exit 1
common=(--config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs"
        --set optim.epochs=1)
extra=()   # more dcal arguments for the next run() only
run() {   # name binary device [env...]
  local name=$1 bin=$2 dev=$3; shift 3
  env "$@" "$bin" train "${common[@]}" "${extra[@]}" --set train.device="$dev" --set train.run_name="$name" \
    > "$tmp/$name.txt" 2>&1 ||
    { cat "$tmp/$name.txt"; bad "$name: dcal train exited non-zero"; }
}
common+=(--set train.update_in_backward=false)
run gpu "$sim" cuda DCAL_CUDA_GRAPHS=0
run graphs "$sim" cuda DCAL_CUDA_GRAPHS=1
read -r mb acc < <(sed -nE 's/^memory plan: micro-batch ([0-9]+) x accumulation ([0-9]+).*/\1 \2/p' "$tmp/gpu.txt")
[ "${acc:-}" = 1 ] || bad "the simulated device picked accumulation ${acc:-?}: the update in backward needs 1"
extra=(--set train.update_in_backward=true)
run inbwd "$sim" cuda DCAL_CUDA_GRAPHS=0
extra=()
[ -n "${mb:-}" ] || { bad "no memory plan line in the GPU run's output"; mb=4; acc=4; }
common+=(--set train.micro_batch="$mb" --set train.accum_steps="$acc")
run cpu "$cpu" cpu
describe() { grep -o '"backend_describe": "[^"]*' "$tmp/runs/$1/manifest.json"; }
describe gpu | grep -q "cudasim.*precision bf16.*graphs off" ||
  bad "the manifest does not record the simulated GPU at precision bf16, graphs off: $(describe gpu)"
describe graphs | grep -q "graphs on" || bad "DCAL_CUDA_GRAPHS=1: the manifest does not say graphs on"
grep -q "capture failed" "$tmp/graphs.txt" && bad "the step capture failed: $(grep 'capture failed' "$tmp/graphs.txt")"
[ "$(wc -l < "$tmp/runs/gpu/steps.tsv")" -ge 4 ] || bad "fewer than 3 steps in steps.tsv"
a=$(hash_of "$tmp/gpu.txt"); b=$(hash_of "$tmp/graphs.txt")
echo "weights: op by op $a, recorded $b"
[ -n "$a" ] && [ "$a" = "$b" ] || bad "recorded steps change the weights"
cmp -s "$tmp/runs/gpu/steps.tsv" "$tmp/runs/graphs/steps.tsv" || bad "recorded steps change steps.tsv"
c=$(hash_of "$tmp/inbwd.txt")
echo "weights: AdamW inside backward $c"
[ -n "$c" ] && [ "$c" = "$a" ] || bad "AdamW inside backward changes the weights"
cmp -s "$tmp/runs/gpu/steps.tsv" "$tmp/runs/inbwd/steps.tsv" || bad "AdamW inside backward changes steps.tsv"
python3 - "$tmp/runs/gpu/steps.tsv" "$tmp/runs/cpu/steps.tsv" <<'PY' || bad "step 1's loss: the simulated GPU is off the CPU"
import sys
def first(p):
    for line in open(p):
        if not line.startswith('#'): return float.fromhex(line.split('\t')[2])
g, c = first(sys.argv[1]), first(sys.argv[2])
print(f"step 1 loss: gpu {g:.6f} cpu {c:.6f}")
sys.exit(0 if abs(g - c) <= 2e-2 * abs(c) else 1)
PY
exit $fail
