#!/usr/bin/env bash
# Install dcal's build and test dependencies from Debian packages. Idempotent:
# packages already present are left alone, and apt is only run when needed.
set -euo pipefail
# clang + libclang-rt-14-dev (libFuzzer, ASan/UBSan runtimes): the fuzz harnesses (tests/fuzz/README.md);
# libomp-dev is also what clang's -fopenmp links.
# libopenblas-openmp-dev: OpenBLAS on the same OpenMP pool as dcal's ops (CMakeLists.txt).
# libdnnl-dev: oneDNN, bf16 GEMMs on CPUs with AVX512_BF16/AMX (src/backend/cpu/gemm_dnnl.c).
# openmpi-bin + libopenmpi-dev: data-parallel training (mpirun; src/dist/) and its test, tests/e2e_mpi.sh.
# chromium: tests/e2e_report.sh renders report.html headless. python3-venv: the test venv
# (tensorboard for e2e_tensorboard; .ci/run makes it).
pkgs=(build-essential cmake pkg-config libyaml-dev libstb-dev check libopenblas-dev libopenblas-openmp-dev libomp-dev libssl-dev libdnnl-dev
      openmpi-bin libopenmpi-dev chromium python3-venv
      clang libclang-rt-14-dev "$@")   # extra packages as arguments (scripts/install-test-deps.sh)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
echo "dcal: dependencies present (${pkgs[*]})"
