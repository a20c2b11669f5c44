#!/usr/bin/env bash
# gpu_demo.sh (label gpu; skipped without a GPU or a CUDA build): issue 14's precision evidence on
# the README demo (configs/fgvc/synthetic.yaml, 12 epochs) on CUDA — a bf16 run ends within 2
# points of the fp32 run's top-1 (SA, GLCA, SA+GLCA) and its loss curve (the mean loss of each
# twelfth of the steps) within 2% of the fp32 one; a second bf16 run with the same seed is bitwise
# the first (steps.tsv's exact hex losses and gradient norms, and the weights' SHA-256).
set -u
dcal=$1; src=$2
command -v python3 > /dev/null || { echo "skip: no python3"; exit 77; }
nvidia-smi -L > /dev/null 2>&1 || { echo "skip: no GPU (nvidia-smi -L)"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-gpudemo.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
"$dcal" make-synthetic --out "$tmp/data" --classes 10 --per-class 60 --test-per-class 10 --img 72 > /dev/null
run() {   # name precision
  local t0; t0=$(date +%s)
  if ! "$dcal" train --config "$src/configs/fgvc/synthetic.yaml" --set data.root="$tmp/data" \
      --set train.out_dir="$tmp/runs" --set train.run_name="$1" --set train.device=cuda --set train.precision="$2" \
      > "$tmp/$1.txt" 2> "$tmp/$1.err"; then
    grep -q "built without CUDA\|no CUDA GPU" "$tmp/$1.err" && { echo "skip: $(head -1 "$tmp/$1.err")"; exit 77; }
    cat "$tmp/$1.txt" "$tmp/$1.err"; echo "FAIL: the $2 run failed"; exit 1
  fi
  echo "$1 ($2): $(( $(date +%s) - t0 )) s; $(grep '^eval' "$tmp/$1.txt" | tail -1)"
}
run bf16 bf16
run fp32 fp32
run bf16_again bf16
python3 - "$tmp" <<'PY' || exit 1
import re, sys
tmp = sys.argv[1]
def steps(name):   # exact per-step records (hex floats) of steps.tsv
    rows = [l.split('\t') for l in open(f"{tmp}/runs/{name}/steps.tsv") if not l.startswith('#')]
    return [[float.fromhex(v) for v in r[2:]] for r in rows]
def top1(name):
    last = [l for l in open(f"{tmp}/{name}.txt") if l.startswith('eval')][-1]
    return {k: float(v) for k, v in re.findall(r'(SA\+GLCA|GLCA|SA) ([0-9.]+)%', last.split('|')[0])}
def sha(name):
    head = open(f"{tmp}/runs/{name}/checkpoint.safetensors", 'rb').read(1 << 16).decode('latin-1')
    return re.search(r'"params_sha256":"([0-9a-f]+)"', head).group(1)
bad = []
a, b = top1('bf16'), top1('fp32')
for k in ('SA', 'GLCA', 'SA+GLCA'):
    print(f"top-1 {k}: bf16 {a[k]:.2f}%  fp32 {b[k]:.2f}%  (within 2 points: {abs(a[k] - b[k]) <= 2})")
    if abs(a[k] - b[k]) > 2: bad.append(f"top-1 {k} differs by {abs(a[k] - b[k]):.2f} points")
la, lb = [r[0] for r in steps('bf16')], [r[0] for r in steps('fp32')]
n = min(len(la), len(lb)); w = max(1, n // 12); worst = 0
for i in range(0, n - w + 1, w):
    ma, mb = sum(la[i:i + w]) / w, sum(lb[i:i + w]) / w
    worst = max(worst, abs(ma - mb) / abs(mb))
print(f"loss curve: {n} steps in windows of {w}, worst relative gap {worst:.4f} (limit 0.02)")
if worst > 0.02: bad.append(f"loss curve gap {worst:.4f} > 0.02")
same = steps('bf16') == steps('bf16_again') and sha('bf16') == sha('bf16_again')
print(f"two bf16 runs bitwise equal (steps.tsv, weights' SHA-256): {same}")
if not same: bad.append("two bf16 runs with one seed differ")
for x in bad: print("FAIL:", x)
sys.exit(1 if bad else 0)
PY
echo "ok: bf16 against fp32 on the demo, and bf16 twice"
