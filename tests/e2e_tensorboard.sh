#!/usr/bin/env bash
# e2e_tensorboard.sh: the run's events.out.tfevents.* file reads back with
# TensorBoard's own reader (the package `tensorboard --logdir` runs): a first
# record with file_version "brain.Event:2", then for every train and eval row
# of metrics.jsonl its scalars (train/loss, train/lr, test/acc_sa,
# test/acc_glca, test/acc_sa_glca, ...) at the row's step with the row's
# value as float32 — also after a stop and a --resume over rows logged past
# the checkpoint (the events file is rebuilt: one file, no repeated step).
# A flipped byte must be refused by the reader's CRC check.
# Skipped (77) when no Python here imports tensorboard. To run it:
#   python3 -m venv --system-site-packages build/pyvenv && build/pyvenv/bin/pip install tensorboard
# (or set DCAL_PYTHON to an interpreter that has it).
set -eu
dcal=$1; src=$2
py=""
for p in "${DCAL_PYTHON:-}" "$(dirname "$dcal")/pyvenv/bin/python" /usr/bin/python3 python3; do
  [ -n "$p" ] && "$p" -c 'import tensorboard' 2>/dev/null && { py=$p; break; }
done
[ -n "$py" ] || { echo "skip: no Python here imports tensorboard (python3 -m venv --system-site-packages build/pyvenv && build/pyvenv/bin/pip install tensorboard)"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-tb.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
"$dcal" make-synthetic --out "$tmp/data" --classes 10 --per-class 8 --test-per-class 2 --img 36 >/dev/null
common=(--config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs"
        --set train.eval_every=1)
# A run cut at step 3, two rows appended as a kill -9 would leave them, then resumed to the end.
"$dcal" train "${common[@]}" --set train.run_name=tb --set train.max_steps=3 > "$tmp/a.txt" 2>&1 || { cat "$tmp/a.txt"; exit 1; }
m="$tmp/runs/tb/metrics.jsonl"
row=$(grep '"kind":"train"' "$m" | tail -1)
for s in 4 5; do sed "s/\"step\":3,/\"step\":$s,/" <<<"$row" >> "$m"; done
"$dcal" train --resume "$tmp/runs/tb" --set train.max_steps=0 > "$tmp/b.txt" 2>&1 || { cat "$tmp/b.txt"; exit 1; }
grep -q "dropped 2 row(s)" "$tmp/b.txt" || { echo "FAIL: the rows past the checkpoint were not dropped"; cat "$tmp/b.txt"; exit 1; }
n=$(ls "$tmp/runs/tb" | grep -c '^events\.out\.tfevents\.') || true
[ "$n" = 1 ] || { echo "FAIL: $n events files after the resume (want 1)"; ls -la "$tmp/runs/tb"; exit 1; }

"$py" - "$tmp/runs/tb" <<'PY'
import glob, json, math, os, struct, sys
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
run = sys.argv[1]
path = glob.glob(os.path.join(run, "events.out.tfevents.*"))[0]
events = list(event_file_loader.LegacyEventFileLoader(path).Load())
assert events[0].file_version == "brain.Event:2", events[0]
f32 = lambda x: struct.unpack("<f", struct.pack("<f", x))[0]
want = {}
names = {"train": ["loss", "lr", "ce_sa", "ce_glca", "ce_pwca", "grad_norm", "img_s", "rss_mib"],
         "eval": ["acc_sa", "acc_glca", "acc_combined", "mean_class_acc"]}
for line in open(os.path.join(run, "metrics.jsonl")):
    row = json.loads(line)
    for key in names.get(row["kind"], []):
        tag = ("train" if row["kind"] == "train" else row.get("split", "test")) + "/" + key.replace("acc_combined", "acc_sa_glca")
        want.setdefault(tag, []).append((row["step"], f32(row[key])))
acc = EventAccumulator(run)
acc.Reload()
tags = sorted(acc.Tags()["scalars"])
assert tags == sorted(want), (tags, sorted(want))
for tag in tags:
    got = [(e.step, e.value) for e in acc.Scalars(tag)]
    assert got == want[tag], (tag, got, want[tag])
steps = [s for s, _ in want["train/loss"]]
assert steps == list(range(1, 11)), steps
print("ok: %d tags, %d train rows, %d eval rows read back by tensorboard %s" %
      (len(tags), len(want["train/loss"]), len(want["test/acc_sa"]), __import__("tensorboard").__version__))
# A flipped byte in the last record's data: the reader's CRC check must drop
# that record (it logs the loss and stops), so this check can fail.
raw = bytearray(open(path, "rb").read())
raw[len(raw) - 10] ^= 0x01
bad = os.path.join(run, "..", "bad.tfevents")
open(bad, "wb").write(raw)
got = list(event_file_loader.LegacyEventFileLoader(bad).Load())
assert len(got) == len(events) - 1, "a corrupted record was read: %d of %d events" % (len(got), len(events))
print("ok: a flipped byte costs its record (%d of %d events read)" % (len(got), len(events)))
PY
