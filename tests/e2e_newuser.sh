#!/usr/bin/env bash
# e2e_newuser.sh: what a new user meets, each fixed once (issue 17):
# make-synthetic's hint is the train command; the quickstart runs twice (a
# config's own run name moves on to NAME-2, a --set name is refused with the
# --resume hint); a lowered batch size names train.accum_steps and
# --max-memory; dcal plan names the backend and precision; dcal eval uses the
# run's dataset, and a missing checkpoint says "no such file"; dcal audit takes
# a bare run name; a second Ctrl-C exits at once, non-zero, and the run resumes.
set -u
dcal=$1; src=$2; fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-newuser.XXXXXX")
pid=""
cleanup() { [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
check() {  # check MESSAGE CONDITION...
  local msg=$1; shift
  if "$@"; then echo "ok: $msg"; else echo "FAIL: $msg"; fail=1; fi
}
cd "$tmp" || exit 1

# make-synthetic: the command that trains on what it wrote.
"$dcal" make-synthetic --out "$tmp/data" --classes 10 --per-class 8 --test-per-class 2 --img 36 > mk.txt || exit 1
check "make-synthetic names --dataset synthetic" grep -qx "train on it with: dcal train --dataset synthetic --data-root $tmp/data" mk.txt

# The same command twice (the run name comes from the config: tiny).
common=(--config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/data" --set train.threads=1 --set train.max_steps=1)
"$dcal" train "${common[@]}" > t1.txt 2>&1 || { cat t1.txt; exit 1; }
"$dcal" train "${common[@]}" > t2.txt 2>&1; rc=$?
check "the second run succeeds ($rc)" test $rc -eq 0
check "the second run says where it went" grep -q "^dcal: runs/tiny holds an earlier run (continue it with 'dcal train --resume runs/tiny'); this run is runs/tiny-2$" t2.txt
check "the first run is untouched" test -s runs/tiny/checkpoint.safetensors -a -s runs/tiny-2/checkpoint.safetensors
"$dcal" train "${common[@]}" --set train.run_name=tiny > t3.txt 2>&1; rc=$?
check "an explicit name that exists is refused with the --resume hint" grep -q "^dcal: runs/tiny: a run already exists here (manifest.json); continue it with --resume runs/tiny" t3.txt
check "... and exits 1 ($rc)" test $rc -eq 1

# A batch size lowered to fit memory: the gate says how to keep the paper's batch.
"$dcal" train --dataset cub --set train.micro_batch=8 > /dev/null 2> b.txt
check "the refused batch names train.accum_steps=2 and --max-memory" grep -q "^dcal: compliance rule 'effective_batch' fails: .*--set train.accum_steps=2 (micro-batch 8 x 2 = 16), or let dcal pick the micro-batch for your memory with --max-memory SIZE" b.txt

# dcal plan: the backend and precision that would run.
"$dcal" plan --dataset cub --set train.device=cpu > p.txt 2>&1
check "plan names backend and precision" grep -qx "backend: cpu, precision fp32 (train.precision=auto: the backend's best)" p.txt
# bf16 on a CPU without AVX512_BF16/AMX-BF16: flagged, with the reason (e2e_bf16_cpu.sh: elsewhere it runs).
if ! grep -qE 'avx512_bf16|amx_bf16' /proc/cpuinfo; then
  DCAL_CPU_BF16= "$dcal" plan --dataset cub --set train.device=cpu --set train.precision=bf16 > p2.txt 2>&1
  check "plan flags an unsupported precision" grep -qx "backend: cpu, precision bf16 (not supported by this backend here: train refuses it: bf16 on the CPU needs AVX512_BF16 or AMX-BF16, .*)" p2.txt
fi
check "plan no longer claims CPU for every config" test -z "$(grep 'CPU backend: everything fp32' p.txt)"

# dcal eval: the run's own dataset (here not the config default root), a run dir, a missing file.
"$dcal" eval --checkpoint runs/tiny/checkpoint.safetensors > e.txt 2>&1; rc=$?
check "eval uses the run's dataset ($rc)" grep -q "^runs/tiny/checkpoint.safetensors on synthetic test split ($tmp/data, 20 images):" e.txt
"$dcal" eval --checkpoint runs/tiny > e2.txt 2>&1
check "eval takes a run directory" grep -q "^runs/tiny/checkpoint.safetensors on synthetic test split" e2.txt
"$dcal" eval --checkpoint runs/tiny/nope.safetensors > /dev/null 2> e3.txt; rc=$?
check "a missing checkpoint says no such file, exit 1 ($rc)" test $rc -eq 1
check "... in one line" test "$(cat e3.txt)" = "dcal: runs/tiny/nope.safetensors: no such file (give a run's checkpoint, e.g. --checkpoint runs/NAME/checkpoint.safetensors)"

# dcal audit NAME: runs/NAME; an unknown name is one line.
"$dcal" audit tiny > a.txt 2>&1
check "audit takes a bare run name" grep -qx "runs/tiny: audit passed" a.txt
"$dcal" audit nosuch > /dev/null 2> a2.txt; rc=$?
check "an unknown run is one line, exit 1 ($rc)" test $rc -eq 1 -a "$(cat a2.txt)" = "dcal: audit: nosuch: no such run (neither ./nosuch nor runs/nosuch is a directory)"

# A second Ctrl-C: exit at once (130) while the first is still finishing its step.
# The two must arrive apart (a pending signal is not queued twice): the second is
# sent once the first has been seen; a run that finished first is retried.
slow=(--dataset synthetic --data-root "$tmp/data" --set train.threads=1 --set optim.epochs=1000)
for attempt in 1 2 3; do
  "$dcal" train "${slow[@]}" --set train.run_name=ctrlc$attempt > c.txt 2> c.err &
  pid=$!
  for i in $(seq 1 600); do grep -q '"kind":"train"' runs/ctrlc$attempt/metrics.jsonl 2>/dev/null && break; sleep 0.1; done
  kill -INT $pid
  for i in $(seq 1 200); do grep -q "stop requested" c.err && break; sleep 0.01; done
  kill -INT $pid 2>/dev/null
  rc=0; wait $pid || rc=$?; pid=""
  grep -q "second interrupt" c.err && break
done
check "the second interrupt exits 130 ($rc)" test $rc -eq 130
check "... saying so" grep -q "^dcal: second interrupt: exiting now without saving; the last checkpoint on disk is intact$" c.err
"$dcal" train --resume runs/ctrlc$attempt --set train.max_steps=2 > r.txt 2>&1; rc=$?
check "the run resumes after it ($rc)" test $rc -eq 0
exit $fail
