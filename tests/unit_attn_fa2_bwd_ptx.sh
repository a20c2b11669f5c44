#!/usr/bin/env bash
# unit_attn_fa2_bwd_ptx.sh: the FA2 attention backward (kernels/attention_fa2_bwd.cu) as
# nvcc compiles it for sm_80, the oldest architecture of the fat binary: its PTX carries the
# mma.sync m16n8k16 bf16 and ldmatrix (.trans included) instructions and no trap (the
# below-sm_80 fallback of mma_sm80.cuh), and no atomic (atom.*, red.*): the backward's
# bitwise repeatability rests on one writer per gradient element, which the simulator
# cannot show (it runs blocks one after another), so it is checked on the compiled code.
# Skipped (77) without nvcc; about 4 s.
set -u
src=$2
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
[ -x "$nvcc" ] || { echo "skip: no nvcc (the CUDA toolkit) on PATH or in /usr/local/cuda/bin"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-fa2ptx.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$nvcc" -std=c++17 -O3 -arch=sm_80 -I"$src" -I"$src/src" -ptx "$src/kernels/attention_fa2_bwd.cu" \
    -o "$tmp/bwd.ptx" 2> "$tmp/err" || { cat "$tmp/err"; fail "nvcc -arch=sm_80 -ptx kernels/attention_fa2_bwd.cu failed"; }
count() { grep -cE "$1" "$tmp/bwd.ptx"; }
mma=$(count '^\s*mma\.sync\.aligned\.m16n8k16\.row\.col\.f32\.bf16\.bf16\.f32')
ldm=$(count '^\s*ldmatrix\.sync\.aligned\.m8n8\.x4\.shared\.b16')
ldt=$(count '^\s*ldmatrix\.sync\.aligned\.m8n8\.x4\.trans\.shared\.b16')
atom=$(count '^\s*(atom|red)\.')
traps=$(count '^\s*trap;')
echo "attention_fa2_bwd.cu sm_80 PTX: $mma mma.sync, $ldm ldmatrix x4, $ldt ldmatrix x4.trans, $atom atomics, $traps traps"
[ "$mma" -gt 0 ] && [ "$ldm" -gt 0 ] && [ "$ldt" -gt 0 ] || fail "the sm_80 PTX lacks mma.sync or ldmatrix (the tensor-core path did not compile)"
[ "$traps" -eq 0 ] || fail "the sm_80 PTX has a trap: a wrapper took the below-sm_80 path"
[ "$atom" -eq 0 ] || { grep -nE '^\s*(atom|red)\.' "$tmp/bwd.ptx" | head -3; fail "the backward uses atomics: its gradients are no longer summed in a fixed order"; }
