#!/usr/bin/env bash
# check-layers.sh: the layout rules of ARCHITECTURE.md, checked.
#  1. Each layer includes only the layers below it (the table below; each
#     folder's README says the same in words).
#  2. Nothing outside the CUDA backend (kernels/) includes a CUDA header, calls
#     the CUDA API or tests DCAL_HAVE_CUDA: the build and kernels/ alone know.
#  3. No C file over 600 lines and no function over 60 lines (first line of the
#     signature to the closing brace; initialised tables excepted) in src/,
#     compliance/ and datasets/.
# Usage: tools/check-layers.sh [repo root]. Prints every violation; exit 1 if any.
set -u
cd "${1:-$(dirname "$0")/..}" || exit 2
fail=0
bad() { echo "layers: $*"; fail=1; }

# folder (files directly in it) → include prefixes it may use, besides its own.
rules=(
  "src/core|core/"
  "src/config|core/ compliance/ datasets/registry.h"
  "compliance|core/ config/ datasets/registry.h"
  "datasets|core/ config/"
  "src/backend|core/"
  "src/backend/cpu|core/ backend/backend.h"
  "kernels|core/ backend/backend.h"
  "src/model|core/ config/ backend/backend.h"
  "src/run|core/ config/ compliance/ datasets/"
  "src/dist|core/ backend/backend.h"
  "src/train|core/ config/ compliance/ datasets/ backend/backend.h model/ run/ dist/"
  "src/cmd|core/ config/ compliance/ datasets/ backend/backend.h model/ run/ dist/ train/"
)
for r in "${rules[@]}"; do
  dir=${r%%|*}; allowed="${r#*|} ${dir#src/}/"
  for f in "$dir"/*.c "$dir"/*.h "$dir"/*.cu "$dir"/*.cuh; do
    [ -f "$f" ] || continue
    while IFS= read -r inc; do
      ok=0
      for a in $allowed; do case "$inc" in "$a"*) ok=1 ;; esac; done
      [ $ok = 1 ] || bad "$f includes \"$inc\": not allowed for $dir (allowed: $allowed)"
    done < <(sed -nE 's/^#include "([^"]+)".*/\1/p' "$f" | grep / )
  done
done

# CUDA stays in kernels/ and the build.
while IFS= read -r hit; do bad "CUDA outside kernels/: $hit"; done < <(
  grep -rnE '#include <(cuda|cublas|cudnn|nccl|curand)[^>]*>|DCAL_HAVE_CUDA|\bcuda[A-Z][A-Za-z]*\(|\bcuda_[a-z_]+\(|__global__' \
    --include='*.[ch]' src compliance datasets tests bench 2>/dev/null)

# Sizes.
for f in $(find src compliance datasets -name '*.c' 2>/dev/null | sort); do
  n=$(wc -l < "$f"); [ "$n" -le 600 ] || bad "$f has $n lines (limit 600)"
  awk -v F="$f" '
    /^[A-Za-z_]/ && !infn && start == 0 && $0 !~ /=/ && $0 !~ /;[ \t]*$/ && $0 !~ /^(typedef|struct|enum|union)\b/ { start = FNR }
    start && !infn && /\{[ \t]*$/ { infn = 1 }
    start && !infn && /;[ \t]*$/ { start = 0 }
    infn && /^\}/ { n = FNR - start + 1; if (n > 60) printf "layers: %s:%d: function is %d lines (limit 60)\n", F, start, n; infn = 0; start = 0 }
  ' "$f"
done | { out=$(cat); [ -z "$out" ] || { echo "$out"; exit 1; }; } || fail=1

[ $fail = 0 ] && echo "layers: ok"
exit $fail
