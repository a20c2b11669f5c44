#!/usr/bin/env bash
# e2e_data.sh: hostile dataset inputs through the binary, each under `timeout 20`
# (a hang is a failure, not a stuck ctest): a FIFO named as an image, a bad test
# image with data.skip_bad (training images only), a listed path leaving the root.
# Each gives a non-zero exit and one 'dcal: ' line naming the file.
set -u
dcal=$1; src=$2; fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-data.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
"$dcal" make-synthetic --out "$tmp/data" --classes 10 --per-class 2 --test-per-class 1 --img 36 >/dev/null || exit 1
common=(--config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs" --set optim.epochs=1)
expect() {  # expect PATTERN -- cmd...: exit 1 (not a timeout), stderr one 'dcal: ' error line (warnings aside) with PATTERN
  local pat=$1; shift 2
  timeout -k 5 20 "$@" > "$tmp/out.txt" 2> "$tmp/err.txt"; local rc=$?
  if [ $rc -ne 1 ]; then echo "FAIL: '$*' exited $rc (124 or 137: hung)"; cat "$tmp/err.txt"; fail=1; return; fi
  if ! grep -q -- "$pat" "$tmp/err.txt"; then echo "FAIL: '$*': stderr lacks '$pat':"; cat "$tmp/err.txt"; fail=1; return; fi
  if [ "$(grep '^dcal: ' "$tmp/err.txt" | grep -vc '^dcal: WARNING: ')" -ne 1 ]; then echo "FAIL: '$*': not one error line:"; cat "$tmp/err.txt"; fail=1; return; fi
  echo "ok: $(grep -- "$pat" "$tmp/err.txt" | head -1)"
}
# Images by split: id k of class c is train for the first two of each class (make-synthetic).
train_img=$(awk 'NR==1 {print $2}' "$tmp/data/images.txt")
test_img=$(awk 'NR==3 {print $2}' "$tmp/data/images.txt")
[ "$(awk 'NR==3 {print $2}' "$tmp/data/train_test_split.txt")" = 0 ] || { echo "FAIL: line 3 is not a test image"; exit 1; }
cp "$tmp/data/images/$test_img" "$tmp/test.png"

# A FIFO as a test image: refused at once by train (even with skip_bad) and by dataset check.
rm "$tmp/data/images/$test_img"; mkfifo "$tmp/data/images/$test_img"
expect "$test_img" -- "$dcal" train "${common[@]}" --set train.run_name=fifo --set data.skip_bad=true
expect "$test_img" -- "$dcal" dataset check --dataset synthetic --data-root "$tmp/data"
rm "$tmp/data/images/$test_img"; cp "$tmp/test.png" "$tmp/data/images/$test_img"
# A FIFO as a training image without skip_bad.
cp "$tmp/data/images/$train_img" "$tmp/train.png"
rm "$tmp/data/images/$train_img"; mkfifo "$tmp/data/images/$train_img"
expect "$train_img" -- "$dcal" train "${common[@]}" --set train.run_name=fifo2
rm "$tmp/data/images/$train_img"; cp "$tmp/train.png" "$tmp/data/images/$train_img"

# A corrupt test image with skip_bad: an error at the evaluation, not a silently smaller test set.
head -c 100 "$tmp/test.png" > "$tmp/data/images/$test_img"
expect "training images only" -- "$dcal" train "${common[@]}" --set train.run_name=skiptest --set data.skip_bad=true
grep -q "$test_img" "$tmp/err.txt" || { echo "FAIL: the bad test image is not named"; fail=1; }
cp "$tmp/test.png" "$tmp/data/images/$test_img"

# A listed path that leaves the root (to a real image outside it) is refused with file:line.
cp "$tmp/test.png" "$tmp/outside.png"
cp "$tmp/data/images.txt" "$tmp/images.txt"
awk 'NR==3 {$2="../../outside.png"} {print}' "$tmp/images.txt" > "$tmp/data/images.txt"
expect "images.txt:3: path '../../outside.png' has a '..' component" -- "$dcal" dataset check --dataset synthetic --data-root "$tmp/data"
cp "$tmp/images.txt" "$tmp/data/images.txt"

# And the restored set is fine.
timeout -k 5 20 "$dcal" dataset check --dataset synthetic --data-root "$tmp/data" > /dev/null 2>&1 || { echo "FAIL: restored set"; fail=1; }
exit $fail
