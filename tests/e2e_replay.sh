#!/usr/bin/env bash
# e2e_replay.sh: RUN/steps.tsv and `dcal audit --replay K RUN` (issue 12).
# A tiny run logs every step exactly; the replay re-executes its first steps
# bit for bit without touching RUN; one flipped bit in a logged loss fails the
# audit at exactly that step; another thread count gives no verdict (exit 0);
# a resumed run whose log held steps past its checkpoint ends with the
# uninterrupted run's log; changed starting weights are refused.
set -eu
dcal=$1; src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-replay.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive   # passive: no spinning on a busy machine
fail() { echo "FAIL: $*"; exit 1; }
"$dcal" make-synthetic --out "$tmp/data" --classes 10 --per-class 8 --test-per-class 2 --img 36 >/dev/null
common=(--config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs")
# 6 steps: across the epoch boundary (5 steps per epoch), where the run evaluates and saves.
"$dcal" train "${common[@]}" --set train.run_name=full --set train.max_steps=6 >/dev/null 2>&1
run=$tmp/runs/full
[ "$(grep -vc '^#' "$run/steps.tsv")" = 6 ] || fail "steps.tsv should hold 6 steps"; cat "$run/steps.tsv"
"$dcal" audit "$run" >/dev/null || fail "plain audit of an untouched run"

snapshot() { (cd "$run" && find . -type f -printf '%p %s %T@\n' | sort && find . -type f -exec sha256sum {} + | sort); }
before=$(snapshot)
out=$("$dcal" audit --replay 6 "$run" 2>&1) || { echo "$out"; fail "replay of an untouched run"; }
grep -q "replay of 6 steps matched bit for bit" <<<"$out" || { echo "$out"; fail "no match line"; }
[ "$before" = "$(snapshot)" ] || fail "the replay changed the run directory"
echo ok: replay 6 steps

# One bit of step 2's logged loss (the third field) flipped: the audit fails at step 2, loss.
cp "$run/steps.tsv" "$tmp/steps.orig"
python3 - "$run/steps.tsv" <<'EOF'
import struct, sys
p = sys.argv[1]; lines = open(p).read().split('\n')
f = lines[2].split('\t'); assert f[0] == '2'
bits = struct.unpack('<Q', struct.pack('<d', float.fromhex(f[2])))[0] ^ 1
f[2] = struct.unpack('<d', struct.pack('<Q', bits))[0].hex(); lines[2] = '\t'.join(f)
open(p, 'w').write('\n'.join(lines))
EOF
sed -n 3p "$run/steps.tsv"
rc=0; out=$("$dcal" audit --replay 2 "$run" 2>&1) || rc=$?
[ $rc = 1 ] || { echo "$out"; fail "a flipped bit: exit $rc, expected 1"; }
grep -q "^FAIL replay: step 2: loss differs: logged 0x" <<<"$out" || { echo "$out"; fail "no step-2 loss line"; }
grep -q "replay FAILED at step 2 (loss)" <<<"$out" || { echo "$out"; fail "no verdict line"; }
cp "$tmp/steps.orig" "$run/steps.tsv"
echo ok: flipped bit found at step 2

# Another OpenMP thread count: another machine kind, so no verdict and exit 0.
out=$(OMP_NUM_THREADS=1 "$dcal" audit --replay 2 "$run" 2>&1) || { echo "$out"; fail "other thread count: non-zero exit"; }
grep -q "no verdict (largest relative difference" <<<"$out" || { echo "$out"; fail "no relative-difference report"; }
echo ok: no verdict across thread counts

# Usage: K beyond the log, K not a number.
rc=0; "$dcal" audit --replay 7 "$run" >/dev/null 2>"$tmp/err" || rc=$?
[ $rc = 2 ] && grep -q "steps.tsv holds 6 steps (give 1..6)" "$tmp/err" || { cat "$tmp/err"; fail "K > logged: $rc"; }
rc=0; "$dcal" audit --replay x "$run" >/dev/null 2>&1 || rc=$?; [ $rc = 2 ] || fail "--replay x: $rc"

# The data moved: --data-root finds it (the fingerprint still matches).
mv "$tmp/data" "$tmp/data2"
"$dcal" audit --replay 1 --data-root "$tmp/data2" "$run" >/dev/null 2>&1 || fail "--data-root"
mv "$tmp/data2" "$tmp/data"
echo ok: usage and --data-root

# Resume after a kill -9 that left steps 4-5 and a torn line past the step-3 checkpoint: the log is cut back.
"$dcal" train "${common[@]}" --set train.run_name=cut --set train.max_steps=3 >/dev/null 2>&1
sed -n '5,6p' "$run/steps.tsv" >> "$tmp/runs/cut/steps.tsv"; printf '6\t24\t0x1.8p' >> "$tmp/runs/cut/steps.tsv"
"$dcal" train --resume "$tmp/runs/cut" --set train.max_steps=6 >/dev/null 2>&1
cmp "$run/steps.tsv" "$tmp/runs/cut/steps.tsv" || fail "resumed steps.tsv differs from the uninterrupted one"
echo ok: resume cuts the log back

# --init: the starting weights must be there and hash as the manifest says.
"$dcal" train "${common[@]}" --dump-step "$tmp/init.safetensors" >/dev/null 2>&1
"$dcal" train "${common[@]}" --set train.run_name=ini --set train.max_steps=1 --init "$tmp/init.safetensors" >/dev/null 2>&1
"$dcal" audit --replay 1 "$tmp/runs/ini" >/dev/null 2>&1 || fail "replay of an --init run"
printf x >> "$tmp/init.safetensors"
rc=0; "$dcal" audit --replay 1 "$tmp/runs/ini" >/dev/null 2>"$tmp/err" || rc=$?
[ $rc = 1 ] && grep -q "init.safetensors: sha256 [0-9a-f]* differs from the manifest's" "$tmp/err" || { cat "$tmp/err"; fail "changed init: $rc"; }
rm "$tmp/init.safetensors"
rc=0; "$dcal" audit --replay 1 "$tmp/runs/ini" >/dev/null 2>"$tmp/err" || rc=$?
[ $rc = 1 ] && grep -q "the run's init weights are missing" "$tmp/err" || { cat "$tmp/err"; fail "missing init: $rc"; }
echo ok: starting weights checked
