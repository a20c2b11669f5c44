#!/usr/bin/env bash
# unit_attn_peer.sh: bench/attn_peer.py (PyTorch's attention on dcal's shapes, issue 15)
# runs on the CPU at tiny shapes: naive attention (and SDPA's math backend where the
# torch has SDPA) gives a machine line per case and pass, with the stated FLOP count,
# positive times and an error against float32 under bf16's rounding; an SDPA backend the
# torch lacks is skipped with a line; bad arguments exit 2. bench/peer.py --compile on a
# torch without torch.compile is refused with one line. Skipped (77) without torch.
# PEER_PYTHON picks the interpreter (default /usr/bin/python3: Debian's python3-torch).
set -u
src=$2
py=${PEER_PYTHON:-/usr/bin/python3}
"$py" -c 'import torch' 2>/dev/null || { echo "skip: $py cannot import torch (apt-get install python3-torch)"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-apeer.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; cat "$tmp/out" 2>/dev/null; exit 1; }

"$py" "$src/bench/attn_peer.py" --device cpu --B 2 --N 17 --H 2 --hd 8 --reps 2 --warmup 1 \
  --impls flash,cudnn,efficient,math,naive > "$tmp/out" 2>&1 || fail "attn_peer.py exited $?"
sdpa=1; grep -q "has no F.scaled_dot_product_attention" "$tmp/out" && sdpa=0
impls="naive"; [ "$sdpa" = 1 ] && impls="naive math"
for i in $impls; do
  for l in model kernel; do
    [ "$(grep -c "^attn: impl=$i .* layout=$l " "$tmp/out")" = 6 ] ||
      fail "impl=$i layout=$l: expected 6 machine lines (3 cases x 2 passes)"
  done
done
if [ "$sdpa" = 0 ]; then
  grep -q "^attn_peer: impl=flash: skipped: torch .* has no F.scaled_dot_product_attention" "$tmp/out" ||
    fail "no line says why flash was skipped"
fi
# K = floor(0.1·16) = 1: GLCA 2 queries; PWCA 2N = 34 keys. bf16 inputs, float32 reference: err < 2e-2.
awk '/^attn: /{for (i = 2; i <= NF; i++) {split($i, kv, "="); v[kv[1]] = kv[2]}
     nq = v["case"] == "glca" ? 2 : 17; nk = v["case"] == "pwca" ? 34 : 17
     want = 4 * 2 * 2 * nq * nk * 8 * (v["pass"] == "fwdbwd" ? 3.5 : 1) / 1e9
     if (v["Nq"] != nq || v["Nk"] != nk || v["gflop"] / want - 1 > 1e-4 || want / v["gflop"] - 1 > 1e-4) {
       print "bad shape or gflop (want " want "): " $0; bad = 1}
     if (!(v["ms"] > 0) || !(v["tflops"] > 0) || v["min_ms"] > v["ms"]) {print "bad times: " $0; bad = 1}
     if (v["err"] == "" || v["err"] + 0 > 2e-2 || v["prec"] != "bf16") {print "bad err/prec: " $0; bad = 1}}
     END {exit bad}' "$tmp/out" || fail "machine lines"

"$py" "$src/bench/attn_peer.py" --device cpu --cases sa,sb > "$tmp/out" 2>&1; rc=$?
[ $rc = 2 ] && grep -q "error: --cases: 'sb' is not one of sa,glca,pwca" "$tmp/out" || fail "--cases sa,sb: exit $rc"
"$py" "$src/bench/attn_peer.py" --device cpu --N 9 --K 9 > "$tmp/out" 2>&1 && fail "--K 9 with --N 9 accepted"

if ! "$py" -c 'import torch, sys; sys.exit(not hasattr(torch, "compile"))'; then
  "$py" "$src/bench/peer.py" --preset tiny --compile --steps 1 > "$tmp/out" 2>&1 && fail "peer.py --compile ran without torch.compile"
  grep -q "^peer: --compile: torch .* has no torch.compile (torch >= 2.0" "$tmp/out" || fail "peer.py --compile: no clear line"
fi
echo "ok: attn_peer.py's machine lines on the CPU; peer.py --compile refused where torch cannot compile"
