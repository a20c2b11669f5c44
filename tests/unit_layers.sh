#!/usr/bin/env bash
# unit_layers.sh: the layout rules (ARCHITECTURE.md) hold — layer includes, CUDA
# only in kernels/, file and function sizes — and the checker itself catches a
# violation (a planted CUDA include and a too-long function in a scratch copy).
set -u
src=$2
bash "$src/tools/check-layers.sh" "$src" || exit 1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-layers.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src/core"
printf '#include <cuda_runtime.h>\n' > "$tmp/src/core/bad.c"
{ echo 'int long_fn(void) {'; for i in $(seq 1 60); do echo "    x();"; done; echo '}'; } >> "$tmp/src/core/bad.c"
printf '#include "model/model.h"\n' > "$tmp/src/core/up.h"
out=$(bash "$src/tools/check-layers.sh" "$tmp" 2>&1) && { echo "FAIL: checker passed a bad tree"; exit 1; }
for want in "CUDA outside kernels/" "function is 62 lines" 'includes "model/model.h"'; do
  grep -qF "$want" <<<"$out" || { echo "FAIL: checker missed: $want"; echo "$out"; exit 1; }
done
echo "ok: checker catches planted violations"
