#!/usr/bin/env bash
# attn_switch.sh SUITE: the op-case suite on the simulated backend with the FA2
# attention forward and backward (DCAL_CUDA_ATTN=fa2, kernels/attention_fa2.cu and
# attention_fa2_bwd.cu) in the bf16 column. Passes only if the suite passes, its
# backend line names the fa2 forward and backward (so the column really ran them),
# every attention row of the column reports a backward figure and OK, and an
# unknown value is refused with one line and exit 1 before any op runs.
set -uo pipefail
suite=$1
out=$(DCAL_CUDA_ATTN=fa2 "$suite" 2>&1); rc=$?
echo "$out"
if [ "$rc" -ne 0 ]; then echo "attn_switch: the suite failed with DCAL_CUDA_ATTN=fa2 (exit $rc)"; exit 1; fi
if ! grep -q '^  (cuda: .*forward fa2 mma.sync.*, backward fa2 mma.sync' <<<"$out"; then
  echo "attn_switch: the cuda backend's describe line does not name the fa2 forward and backward"; exit 1
fi
all=$(grep -cE '^  cuda-bf16 +(SA|GLCA|PWCA) ' <<<"$out")
n=$(grep -cE '^  cuda-bf16 +(SA|GLCA|PWCA) .* fwd [0-9.e+-]+ \(tol [0-9e.-]+\)  bwd [0-9.e+-]+ \(tol [0-9e.-]+\)  OK$' <<<"$out")
echo "attn_switch: $n of $all attention rows OK, forward and backward, in the fa2 column"
[ "$n" -ge 10 ] || { echo "attn_switch: expected the SMALL and MEDIUM attention rows"; exit 1; }
[ "$n" -eq "$all" ] || { echo "attn_switch: an attention row of the fa2 column lacks its backward or is not OK"; exit 1; }
err=$(DCAL_CUDA_ATTN=bogus "$suite" 2>&1 >/dev/null); rc=$?
want="dcal: DCAL_CUDA_ATTN: unknown attention forward 'bogus' (use wmma or fa2)"
if [ "$rc" -ne 1 ] || [ "$err" != "$want" ]; then
  echo "attn_switch: DCAL_CUDA_ATTN=bogus: want exit 1 and '$want', got exit $rc and: $err"; exit 1
fi
echo "attn_switch: DCAL_CUDA_ATTN=bogus refused: $err"
