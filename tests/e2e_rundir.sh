#!/usr/bin/env bash
# e2e_rundir.sh: the run directory is the run. --resume uses exactly the
# directory given (a moved run resumes where it is, a copy never touches the
# original); a run is locked while it runs; a new run never writes into a
# foreign directory; a resume drops metrics rows past its checkpoint and
# refuses different data; train.devices other than the world size and a run_name that is not
# a plain name are config errors.
set -u
dcal=$1; src=$2; fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-rundir.XXXXXX")
pid=""
cleanup() { [ -n "$pid" ] && { kill -CONT "$pid" 2>/dev/null; kill -KILL "$pid" 2>/dev/null; }; rm -rf "$tmp"; }
trap cleanup EXIT
"$dcal" make-synthetic --out "$tmp/data" --classes 10 --per-class 8 --test-per-class 2 --img 36 >/dev/null || exit 1
# One thread: OpenMP spinning on a busy machine makes these tiny steps slow.
common=(--config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs" --set train.threads=1)
expect() {  # expect PATTERN -- cmd...: non-zero exit, a 'dcal:' error line containing PATTERN
  local pat=$1; shift 2
  "$@" > "$tmp/out.txt" 2> "$tmp/err.txt"; local rc=$?
  if [ $rc -eq 0 ]; then echo "FAIL: '$*' succeeded"; fail=1; return; fi
  if ! grep -q -- "^dcal: .*$pat" "$tmp/err.txt"; then echo "FAIL: '$*': stderr lacks '$pat':"; cat "$tmp/err.txt"; fail=1; return; fi
  echo "ok: $(grep -- "$pat" "$tmp/err.txt" | head -1)"
}
hashes() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }

# 1. A stopped run moved elsewhere resumes there; nothing appears at its old place.
"$dcal" train "${common[@]}" --set train.run_name=a --set train.max_steps=2 > /dev/null 2>&1 || exit 1
mkdir -p "$tmp/elsewhere"; mv "$tmp/runs/a" "$tmp/elsewhere/moved"
if "$dcal" train --resume "$tmp/elsewhere/moved" --set train.max_steps=3 > "$tmp/moved.txt" 2>&1; then
  grep -q "stopped (train.max_steps) at step 3: checkpoint $tmp/elsewhere/moved/checkpoint.safetensors" "$tmp/moved.txt" \
    || { echo "FAIL: moved run did not continue in place"; cat "$tmp/moved.txt"; fail=1; }
  [ ! -e "$tmp/runs/a" ] || { echo "FAIL: resume recreated the old run directory"; fail=1; }
  echo "ok: moved run resumed where it is"
else
  echo "FAIL: moved run does not resume"; cat "$tmp/moved.txt"; fail=1
fi

# 2. A copy resumes in the copy; the original's files are untouched, byte for byte.
"$dcal" train "${common[@]}" --set train.run_name=b --set train.max_steps=2 > /dev/null 2>&1 || exit 1
cp -r "$tmp/runs/b" "$tmp/copy"
hashes "$tmp/runs/b" > "$tmp/b.before"
"$dcal" train --resume "$tmp/copy" --set train.max_steps=3 > "$tmp/copy.txt" 2>&1 || { echo "FAIL: copy does not resume"; cat "$tmp/copy.txt"; fail=1; }
hashes "$tmp/runs/b" > "$tmp/b.after"
if ! cmp -s "$tmp/b.before" "$tmp/b.after"; then
  echo "FAIL: resuming a copy changed the original:"; diff "$tmp/b.before" "$tmp/b.after"; fail=1
elif ! grep -q "at step 3: checkpoint $tmp/copy/checkpoint.safetensors" "$tmp/copy.txt"; then
  echo "FAIL: copy not resumed in place"; cat "$tmp/copy.txt"; fail=1
else
  echo "ok: a copy resumes in the copy, the original unchanged"
fi

# 3. A running run is locked: a second run of the same name and a resume of it are refused.
"$dcal" train "${common[@]}" --set train.run_name=c --set optim.epochs=100000 > "$tmp/c.txt" 2>&1 &
pid=$!
for i in $(seq 1 300); do grep -q '"kind":"train"' "$tmp/runs/c/metrics.jsonl" 2>/dev/null && break; sleep 0.1; done
kill -STOP "$pid"
expect "$tmp/runs/c: in use by another dcal process (pid $pid) holding $tmp/runs/c/.lock" -- \
  "$dcal" train "${common[@]}" --set train.run_name=c --set train.max_steps=1
expect "$tmp/runs/c: in use by another dcal process (pid $pid)" -- "$dcal" train --resume "$tmp/runs/c" --set train.max_steps=1
kill -CONT "$pid"; kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?; pid=""
[ $rc -eq 0 ] && grep -q "interrupted" "$tmp/c.txt" || { echo "FAIL: the locked run did not finish cleanly ($rc)"; cat "$tmp/c.txt"; fail=1; }
"$dcal" audit "$tmp/runs/c" > "$tmp/audit.txt" 2>&1 || { echo "FAIL: audit of the locked run"; cat "$tmp/audit.txt"; fail=1; }
"$dcal" train --resume "$tmp/runs/c" --set train.max_steps=1 > /dev/null 2>&1 || { echo "FAIL: lock not released"; fail=1; }

# 4. A non-empty directory that is not a dcal run is never written into.
mkdir -p "$tmp/runs/mine"; echo "my notes" > "$tmp/runs/mine/notes.txt"
expect "$tmp/runs/mine: not empty and not a dcal run (it holds 'notes.txt' but no manifest.json)" -- \
  "$dcal" train "${common[@]}" --set train.run_name=mine --set train.max_steps=1
[ "$(ls -A "$tmp/runs/mine")" = "notes.txt" ] || { echo "FAIL: wrote into a foreign directory:"; ls -A "$tmp/runs/mine"; fail=1; }

# 5. Rows logged after the last checkpoint (a kill -9 before the next save) are
#    dropped on resume: no step repeats and the audit passes.
"$dcal" train "${common[@]}" --set train.run_name=d --set train.max_steps=3 > /dev/null 2>&1 || exit 1
m="$tmp/runs/d/metrics.jsonl"
sed -n '$p' "$m" | sed 's/"step":3,/"step":4,/' >> "$m"
printf '{"kind":"train","step":5,"ep' >> "$m"   # torn by the kill
"$dcal" train --resume "$tmp/runs/d" > "$tmp/d.txt" 2>&1 || { echo "FAIL: resume of d"; cat "$tmp/d.txt"; fail=1; }
grep -q "metrics.jsonl: dropped 2 row(s) written after the checkpoint at step 3" "$tmp/d.txt" || { echo "FAIL: no truncation note"; cat "$tmp/d.txt"; fail=1; }
dups=$(grep -o '"kind":"train","step":[0-9]*' "$m" | sort | uniq -d)
[ -z "$dups" ] || { echo "FAIL: repeated steps: $dups"; fail=1; }
"$dcal" audit "$tmp/runs/d" > "$tmp/audit.txt" 2>&1 && echo "ok: audit passes after a resume past logged rows" \
  || { echo "FAIL: audit after resume"; cat "$tmp/audit.txt"; fail=1; }

# 6. A resume on different data (data.root may move, the files may not change) is refused.
"$dcal" make-synthetic --out "$tmp/data2" --classes 10 --per-class 9 --test-per-class 2 --img 36 >/dev/null || exit 1
fp=$(sed -nE 's/.*"fingerprint": "([0-9a-f]+)".*/\1/p' "$tmp/runs/b/manifest.json")
expect "$tmp/data2: dataset fingerprint [0-9a-f]* differs from the run's $fp ($tmp/runs/b/manifest.json)" -- \
  "$dcal" train --resume "$tmp/runs/b" --set data.root="$tmp/data2" --set train.max_steps=3
cp -r "$tmp/data" "$tmp/data-moved"
"$dcal" train --resume "$tmp/runs/b" --set data.root="$tmp/data-moved" --set train.max_steps=3 > /dev/null 2>&1 \
  || { echo "FAIL: moved data refused"; fail=1; }

# 7. train.devices other than the processes started, and a run_name that is not a plain name, are config errors.
expect "train.devices 2 but 1 process was started" -- \
  "$dcal" train "${common[@]}" --set train.devices=2 --set train.accum_steps=2 --set train.run_name=dp --set train.max_steps=1
[ ! -e "$tmp/runs/dp" ] || { echo "FAIL: devices=2 trained"; fail=1; }
for name in ../escape . .. a/b; do
  expect "train.run_name" -- "$dcal" train "${common[@]}" --set train.run_name=$name --set train.max_steps=1
done
[ ! -e "$tmp/escape" ] || { echo "FAIL: run_name escaped train.out_dir"; fail=1; }
exit $fail
