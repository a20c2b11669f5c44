#!/usr/bin/env bash
# long_timm_vitb.sh (label long: outside CI, ~80 s on 2 cores): e2e_timm.sh on the paper's
# backbone itself, timm vit_base_patch16_224 through dcal's vit_b16 preset. Run:
# DCAL_LONG_TESTS=1 ctest -L long.
[ "${DCAL_LONG_TESTS:-0}" = 1 ] || { echo "skip: a long test (set DCAL_LONG_TESTS=1)"; exit 77; }
DCAL_TIMM_MODEL=vit_base_patch16_224 DCAL_TIMM_PRESET=vit_b16 exec bash "$2/tests/e2e_timm.sh" "$@"
