#!/usr/bin/env bash
# e2e_mpi.sh: data-parallel training over MPI on the CPU (src/dist/).
#  1. mpirun -np 2 with accumulation 1 ends with the same weights, step log and
#     eval lines, bit for bit, as one process with accumulation 2; rank 1
#     writes nothing into the run directory, and says no warning rank 0 says.
#  2. A run stopped on 2 ranks resumes on 1 (effective batch kept) and ends
#     where the uninterrupted run ends.
#  3. Ranks with different configs are refused before anything is written.
#  4. A rank killed mid-run ends the whole job, non-zero, within seconds, and
#     the last checkpoint still resumes.
#  5. kill -9 of rank 0 or rank 1 in a run with a validation split, then resume on
#     2 ranks: the uninterrupted run's weights, metrics rows and kept files.
# Skips (77) without mpirun: scripts/install-deps.sh installs OpenMPI.
set -u
dcal=$1; src=$2
command -v mpirun >/dev/null || { echo "SKIP: mpirun not found (install openmpi-bin: scripts/install-deps.sh)"; exit 77; }
"$dcal" --version | grep -q "data parallel: MPI" ||
  { echo "SKIP: this dcal was built without MPI (libopenmpi-dev missing at configure time)"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-mpi.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
# CI runs as root; 2 ranks may share fewer cores. Equal thread counts per
# process: the CPU backend's sums depend on the OpenMP thread count.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
mpi=(mpirun --oversubscribe --bind-to none -np 2)
fail=0
bad() { echo "FAIL: $*"; fail=1; }
hash_of() { sed -nE 's/.*final weights sha256 ([0-9a-f]{64}).*/\1/p' "$1"; }
"$dcal" make-synthetic --out "$tmp/data" --classes 10 --per-class 8 --test-per-class 2 --img 36 >/dev/null || exit 1
common=(--config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs"
        --set train.micro_batch=8 --set train.accum_steps=2)

# 1. 2 ranks x accumulation 1 == 1 rank x accumulation 2, bitwise.
"$dcal" train "${common[@]}" --set train.run_name=one > "$tmp/one.txt" 2>&1 || { cat "$tmp/one.txt"; exit 1; }
"${mpi[@]}" "$dcal" train "${common[@]}" --set train.run_name=two > "$tmp/two.txt" 2>&1 || { cat "$tmp/two.txt"; exit 1; }
a=$(hash_of "$tmp/one.txt"); b=$(hash_of "$tmp/two.txt")
echo "1 rank x accum 2: $a"; echo "2 ranks x accum 1: $b"
[ -n "$a" ] && [ "$a" = "$b" ] || bad "weights differ"
grep -q "micro-batch 8 x accum 1 x 2 processes (effective 16)" "$tmp/two.txt" || bad "no world size in the header"
cmp -s "$tmp/runs/one/steps.tsv" "$tmp/runs/two/steps.tsv" || bad "steps.tsv differs"
diff <(grep '^eval' "$tmp/one.txt") <(grep '^eval' "$tmp/two.txt") || bad "eval lines differ (sharded eval)"
[ "$(grep -c '"kind": *"eval"' "$tmp/runs/two/metrics.jsonl")" = 2 ] || bad "metrics.jsonl: not one writer"
[ "$(grep -c '^dcal: done' "$tmp/two.txt")" = 1 ] || bad "more than one rank printed"
# The compliance warnings (tiny.yaml deviates on purpose) once, from rank 0, as one process says them.
w1=$(grep -c '^dcal: WARNING: deviating' "$tmp/one.txt"); w2=$(grep -c '^dcal: WARNING: deviating' "$tmp/two.txt")
[ "$w1" -gt 0 ] && [ "$w1" = "$w2" ] || bad "deviation warnings: $w1 from one process, $w2 from two ranks"
grep -q '"world_size": 2' "$tmp/runs/two/manifest.json" || bad "manifest has no world_size 2"
"$dcal" audit "$tmp/runs/two" > "$tmp/audit.txt" 2>&1 || { cat "$tmp/audit.txt"; bad "audit of the 2-rank run"; }

# 2. Stop on 2 ranks at step 3 (mid-epoch), resume on 1: the same end. With a validation
#    split, stopped in epoch 2 and resumed on 2 ranks: rank 0 replays the best so far, the
#    ranks agree, and the run ends with the uninterrupted 2-rank run's rows.
"${mpi[@]}" "$dcal" train "${common[@]}" --set train.run_name=cut --set train.max_steps=3 > "$tmp/cut1.txt" 2>&1 ||
  { cat "$tmp/cut1.txt"; bad "2-rank run to step 3"; }
"$dcal" train --resume "$tmp/runs/cut" --set train.max_steps=0 > "$tmp/cut2.txt" 2>&1 || { cat "$tmp/cut2.txt"; bad "resume on 1 rank"; }
grep -q "micro-batch 8 x accum 2 (effective 16)" "$tmp/cut2.txt" || bad "resume did not keep micro-batch 8 x accum 2"
c=$(hash_of "$tmp/cut2.txt"); echo "2 ranks to step 3, then 1 rank: $c"
[ "$c" = "$a" ] || bad "resumed on 1 rank differs from the uninterrupted run"
val=(--set data.val_fraction=0.25 --allow-deviation val_split --set optim.epochs=3)
rows() { grep -E '"kind":"(eval|val|best|final)"' "$1/metrics.jsonl" | sed 's/,"time".*//'; }
"${mpi[@]}" "$dcal" train "${common[@]}" "${val[@]}" --set train.run_name=vfull > "$tmp/vfull.txt" 2>&1 || { cat "$tmp/vfull.txt"; bad "2-rank val run"; }
"${mpi[@]}" "$dcal" train "${common[@]}" "${val[@]}" --set train.run_name=vcut --set train.max_steps=4 > /dev/null 2>&1 || bad "2-rank val run to step 4"
"${mpi[@]}" "$dcal" train --resume "$tmp/runs/vcut" --set train.max_steps=0 > "$tmp/vcut.txt" 2>&1 || { cat "$tmp/vcut.txt"; bad "2-rank val resume"; }
[ -n "$(hash_of "$tmp/vfull.txt")" ] && [ "$(hash_of "$tmp/vcut.txt")" = "$(hash_of "$tmp/vfull.txt")" ] || bad "2-rank val resume: weights differ"
[ "$(rows "$tmp/runs/vcut")" = "$(rows "$tmp/runs/vfull")" ] || { diff <(rows "$tmp/runs/vcut") <(rows "$tmp/runs/vfull"); bad "2-rank val resume: rows differ"; }
[ "$(rows "$tmp/runs/vfull" | grep -c '"kind":"best"')" -ge 1 ] || bad "2-rank val run chose no best"

# 3. Different configs on the ranks (MPMD launch) are refused, each rank non-zero, nothing written.
mpirun --oversubscribe --bind-to none -np 1 "$dcal" train "${common[@]}" --set train.run_name=mix : \
  -np 1 "$dcal" train "${common[@]}" --set train.run_name=mix --set train.seed=8 > "$tmp/mix.txt" 2>&1 &&
  bad "ranks with different configs trained"
grep -q "^dcal: rank 1 of 2: config sha256 [0-9a-f]* differs from rank 0's [0-9a-f]*: refusing to start" "$tmp/mix.txt" ||
  { cat "$tmp/mix.txt"; bad "no one-line refusal"; }
[ ! -e "$tmp/runs/mix/manifest.json" ] || bad "a refused run wrote a manifest"

# 4. kill -9 rank 1 after the first checkpoint: the job ends non-zero within seconds, the checkpoint resumes.
timeout 60 "${mpi[@]}" "$dcal" train "${common[@]}" --set train.run_name=kill --set optim.epochs=400 \
  > "$tmp/kill.txt" 2>&1 &
job=$!
for _ in $(seq 200); do [ -e "$tmp/runs/kill/checkpoint.safetensors" ] && break; sleep 0.1; done
victim=""
for p in $(pgrep -f "train.run_name=kill"); do
  tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1" && victim=$p
done
[ -n "$victim" ] || { bad "rank 1 not found (or no checkpoint)"; kill "$job"; }
t0=$(date +%s)
[ -n "$victim" ] && kill -9 "$victim"
wait "$job"; rc=$?; t1=$(date +%s)
echo "kill -9 rank 1: mpirun exit $rc after $((t1 - t0)) s"
[ "$rc" != 0 ] && [ "$rc" != 124 ] || bad "job exit $rc after a killed rank (124: it hung)"
[ $((t1 - t0)) -le 15 ] || bad "the job took $((t1 - t0)) s to end"
# mpirun may return while it is still taking rank 0 down (SIGTERM, then
# SIGKILL); the run's lock is free once that rank is gone, which must be soon.
for _ in $(seq 150); do pgrep -f "train.run_name=kill" >/dev/null || break; sleep 0.1; done
pgrep -af "train.run_name=kill" && bad "a rank outlived mpirun by 15 s"
"$dcal" train --resume "$tmp/runs/kill" --set train.max_steps=1 > "$tmp/kill2.txt" 2>&1 && grep -q "resuming at step" "$tmp/kill2.txt" ||
  { cat "$tmp/kill2.txt"; bad "the last checkpoint does not resume"; }

# 5. kill -9 of one rank (rank 0, the writer, or rank 1) at three points of a run with a
#    validation split that checkpoints and evaluates every epoch and keeps the last two,
#    then resume on 2 ranks: the uninterrupted 2-rank run's weights, every metrics row in
#    order (clock and memory fields aside), the same kept files, and `dcal audit` passes.
# A larger synthetic set than the others' (~2 s a run), so that a kill lands inside it.
"$dcal" make-synthetic --out "$tmp/data5" --classes 10 --per-class 96 --test-per-class 2 --img 36 >/dev/null || exit 1
kv=("${common[@]}" --set data.root="$tmp/data5" "${val[@]}" --set optim.epochs=4 --set train.save_every=1
    --set train.eval_every=1 --set train.keep_last=2)
. "$src/tests/lib/rundir.sh"   # record_rows, kept, ms
t0=$(ms)
"${mpi[@]}" "$dcal" train "${kv[@]}" --set train.run_name=kref > "$tmp/kref.txt" 2>&1 || { cat "$tmp/kref.txt"; bad "2-rank kill reference"; }
dur=$(( $(ms) - t0 )); kw=$(hash_of "$tmp/kref.txt")
echo "2-rank run with a validation split, 4 epochs: $dur ms; $(grep -c '' "$tmp/runs/kref/metrics.jsonl") metrics rows"
for k in "0 0.45" "1 0.65" "0 0.85"; do
  set -- $k; rank=$1; name=kv$rank${2/./}
  delay=$(awk -v f="$2" -v d="$dur" 'BEGIN { printf "%.3f", f * d / 1000 }')
  "${mpi[@]}" "$dcal" train "${kv[@]}" --set train.run_name=$name > "$tmp/$name.txt" 2>&1 &
  job=$!
  sleep "$delay"
  for p in $(pgrep -f "train.run_name=$name"); do
    tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$rank" && kill -9 "$p"
  done
  wait "$job"
  for _ in $(seq 150); do pgrep -f "train.run_name=$name" >/dev/null || break; sleep 0.1; done
  if grep -q "final weights" "$tmp/$name.txt"; then
    got=$(hash_of "$tmp/$name.txt"); how="finished before the kill"
  elif [ ! -f "$tmp/runs/$name/manifest.json" ]; then
    "${mpi[@]}" "$dcal" train "${kv[@]}" --set train.run_name=$name > "$tmp/$name.r.txt" 2>&1 ||
      { cat "$tmp/$name.r.txt"; bad "kill -9 rank $rank at ${delay}s: starting again failed"; continue; }
    got=$(hash_of "$tmp/$name.r.txt"); how="killed before the run was recorded; started again"
  else
    "${mpi[@]}" "$dcal" train --resume "$tmp/runs/$name" > "$tmp/$name.r.txt" 2>&1 ||
      { cat "$tmp/$name.txt" "$tmp/$name.r.txt"; bad "kill -9 rank $rank at ${delay}s: resume on 2 ranks failed"; continue; }
    got=$(hash_of "$tmp/$name.r.txt")
    how=$(grep -oE "resuming at step [0-9]+|no checkpoint yet[^;]*" "$tmp/$name.r.txt" | head -1)
  fi
  [ -n "$kw" ] && [ "$got" = "$kw" ] || bad "kill -9 rank $rank at ${delay}s: final weights $got, uninterrupted $kw"
  [ "$(record_rows "$tmp/runs/$name")" = "$(record_rows "$tmp/runs/kref")" ] ||
    { diff <(record_rows "$tmp/runs/$name") <(record_rows "$tmp/runs/kref"); bad "kill -9 rank $rank at ${delay}s: metrics rows differ"; }
  [ "$(kept "$tmp/runs/$name")" = "$(kept "$tmp/runs/kref")" ] ||
    bad "kill -9 rank $rank at ${delay}s: files $(kept "$tmp/runs/$name"), uninterrupted $(kept "$tmp/runs/kref")"
  "$dcal" audit "$tmp/runs/$name" > "$tmp/$name.audit.txt" 2>&1 ||
    { cat "$tmp/$name.audit.txt"; bad "kill -9 rank $rank at ${delay}s: audit"; }
  echo "kill -9 rank $rank at ${delay}s: ${how:-resumed}; weights, rows and files equal"
done
exit $fail
