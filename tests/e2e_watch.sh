#!/usr/bin/env bash
# e2e_watch.sh: what a user watches during a run.
#  1. Piped output keeps the plain progress lines; every metrics.jsonl row
#     has "time" (ISO-8601 UTC, ms) and "wall_s" (never decreasing);
#     metrics.csv holds the same rows (kind, step, values as written) under
#     a fixed header; report.html is written when the run ends.
#  2. On a terminal (a pty from `script`): one live line per epoch redrawn
#     with '\r' (bar, step/total, img/s, ETA, loss, lr, rss) instead of the
#     step lines, and metrics.jsonl's numbers are the same as when piped.
#  3. A resume over rows logged past the checkpoint: metrics.csv is cut back
#     with metrics.jsonl (same rows), and wall_s goes on from where it was.
set -eu
dcal=$1; src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-watch.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
"$dcal" make-synthetic --out "$tmp/data" --classes 10 --per-class 8 --test-per-class 2 --img 36 >/dev/null
common=(--config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs" --set train.eval_every=1)
fail=0
steps() { sed -E 's/.*"kind":"([a-z]+)".*"step":([0-9]+).*/\1 \2/' "$1"; }   # kind step, per jsonl row
csv_steps() { tail -n +2 "$1" | cut -d, -f3,4 | tr , ' '; }
# metrics.csv against metrics.jsonl: the same rows in the same order, header first.
same_rows() {
  local d=$1
  head -1 "$d/metrics.csv" | grep -qx 'time,wall_s,kind,step,epoch,loss,ce_sa,ce_glca,ce_pwca,lr,grad_norm,loss_w_sa,loss_w_glca,loss_w_pwca,img_s,rss_mib,skipped_images,split,n,acc_sa,acc_glca,acc_combined,mean_class_acc,best_epoch_on_test,params_sha256,adam_sha256' \
    || { echo "FAIL: $d/metrics.csv header: $(head -1 "$d/metrics.csv")"; fail=1; }
  diff <(steps "$d/metrics.jsonl") <(csv_steps "$d/metrics.csv") > "$tmp/diff.txt" \
    || { echo "FAIL: $d: metrics.csv rows differ from metrics.jsonl:"; cat "$tmp/diff.txt"; fail=1; }
  diff <(grep '"kind":"train"' "$d/metrics.jsonl" | sed -E 's/.*"loss":([^,]+),.*"lr":([^,]+),.*/\1 \2/') \
       <(grep ',train,' "$d/metrics.csv" | cut -d, -f6,10 | tr , ' ') > "$tmp/diff.txt" \
    || { echo "FAIL: $d: loss/lr in metrics.csv differ from metrics.jsonl:"; cat "$tmp/diff.txt"; fail=1; }
}
# Every row stamped; wall_s never goes back.
stamped() {
  local bad
  bad=$(grep -vcE '"time":"20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]\.[0-9]{3}Z","wall_s":[0-9]+\.[0-9]{3}\}$' "$1") || true
  [ "$bad" = 0 ] || { echo "FAIL: $bad row(s) of $1 without time/wall_s"; cat "$1"; fail=1; }
  sed -E 's/.*"wall_s":([0-9.]+)\}/\1/' "$1" | sort -c -g 2>/dev/null || { echo "FAIL: wall_s goes back in $1"; fail=1; }
}

# 1. Piped.
"$dcal" train "${common[@]}" --set train.run_name=plain > "$tmp/plain.txt" 2>&1 || { cat "$tmp/plain.txt"; exit 1; }
p="$tmp/runs/plain"
[ "$(grep -c '^step ' "$tmp/plain.txt")" = 10 ] || { echo "FAIL: piped output lost its step lines"; cat "$tmp/plain.txt"; fail=1; }
! grep -q $'\r' "$tmp/plain.txt" || { echo "FAIL: a carriage return in piped output"; fail=1; }
stamped "$p/metrics.jsonl"
same_rows "$p"
grep -q "^dcal: report $p/report.html" "$tmp/plain.txt" && [ -s "$p/report.html" ] \
  || { echo "FAIL: no report.html at the end of the run"; fail=1; }
echo "ok: piped: step lines, stamped rows, metrics.csv = metrics.jsonl, report.html"

# 2. On a terminal.
if command -v script >/dev/null; then
  script -qfec "$(printf '%q ' "$dcal" train "${common[@]}" --set train.run_name=tty)" /dev/null < /dev/null > "$tmp/tty.txt" 2>&1 \
    || { echo "FAIL: the run on a pty failed"; cat -v "$tmp/tty.txt"; exit 1; }
  # What the terminal shows at the end: per line, the text after its last '\r'.
  shown=$(tr -d '\033' < "$tmp/tty.txt" | sed -E 's/\[K//g' | awk -F'\r' '{ s = $NF; if (s == "" && NF > 1) s = $(NF-1); print s }')
  # Drawn at an epoch's first and last step at least: 4 or more '\r' + "epoch" in all.
  [ "$(grep -o $'\repoch' "$tmp/tty.txt" | wc -l)" -ge 4 ] || { echo "FAIL: the live line is not redrawn with \\r"; cat -v "$tmp/tty.txt"; fail=1; }
  live=$(grep -E '^epoch [12]/2 \[#{20}\] 5/5 [0-9.]+ img/s ETA [0-9hms]+ loss [0-9.]+ lr [0-9.e+-]+ rss [0-9]+ MiB$' <<<"$shown" | wc -l)
  [ "$live" = 2 ] || { echo "FAIL: want one finished live line per epoch, got $live:"; echo "$shown"; fail=1; }
  ! grep -q '^step ' <<<"$shown" || { echo "FAIL: step lines on a terminal"; fail=1; }
  diff <(grep '"kind":"train"' "$p/metrics.jsonl" | sed -E 's/"img_s".*//') \
       <(grep '"kind":"train"' "$tmp/runs/tty/metrics.jsonl" | sed -E 's/"img_s".*//') > "$tmp/diff.txt" \
    || { echo "FAIL: metrics rows differ between a terminal and a pipe:"; cat "$tmp/diff.txt"; fail=1; }
  echo "ok: terminal: one live line per epoch; the same metrics rows"
else
  echo "note: no 'script' (util-linux) here: the terminal check did not run"
fi

# 3. Resume over two rows logged past the checkpoint at step 3.
"$dcal" train "${common[@]}" --set train.run_name=cut --set train.max_steps=3 > /dev/null 2>&1 || exit 1
c="$tmp/runs/cut"
row=$(grep '"kind":"train"' "$c/metrics.jsonl" | tail -1)
for s in 4 5; do sed "s/\"step\":3,/\"step\":$s,/" <<<"$row" >> "$c/metrics.jsonl"; done
"$dcal" train --resume "$c" --set train.max_steps=0 > "$tmp/cut.txt" 2>&1 || { cat "$tmp/cut.txt"; exit 1; }
grep -q "dropped 2 row(s)" "$tmp/cut.txt" || { echo "FAIL: rows past the checkpoint not dropped"; cat "$tmp/cut.txt"; fail=1; }
stamped "$c/metrics.jsonl"
same_rows "$c"
[ "$(grep -c '"kind":"train"' "$c/metrics.jsonl")" = 10 ] || { echo "FAIL: resumed run: not 10 train rows"; fail=1; }
echo "ok: resume: metrics.csv cut back with metrics.jsonl; wall_s goes on"
[ $fail = 0 ]
