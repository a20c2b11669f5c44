#!/usr/bin/env bash
# e2e_predict.sh: `dcal predict` and `dcal explain` on a tiny trained run.
#  - predict prints one line per image with 5 named classes; --json parses;
#    its top-1 over the test split gives exactly the SA, GLCA and SA+GLCA
#    accuracies `dcal eval` prints (same preprocessing, same combination);
#  - explain writes overlay_<image>_rollout.png / _topr.png (PNG, zoomed to
#    256 px, a caption strip of 3 text lines below: SA, GLCA, SA+GLCA) and a
#    JSON whose selected tokens are the top-K of its rollout;
#  - friendly errors: a missing checkpoint (or --pretrained file) says "no such file"; a PyTorch zip
#    given to --pretrained says "not a safetensors file ... dcal convert"; a
#    dcal checkpoint given to --pretrained is refused in one line.
set -u
dcal=$1; src=$2; fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-predict.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
"$dcal" make-synthetic --out "$tmp/data" --classes 10 --per-class 8 --test-per-class 2 --img 36 >/dev/null || exit 1
common=(--config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs")
"$dcal" train "${common[@]}" --set train.run_name=r --set train.max_steps=4 > /dev/null 2>&1 || { echo "FAIL: train"; exit 1; }
ck="$tmp/runs/r/checkpoint.safetensors"
# Test images and labels (CUB layout: is_train 0), in id order.
paste -d' ' "$tmp/data/images.txt" "$tmp/data/image_class_labels.txt" "$tmp/data/train_test_split.txt" |
  awk -v d="$tmp/data/images" '$6 == 0 {print d "/" $2, $4 - 1}' > "$tmp/test.txt"
n=$(wc -l < "$tmp/test.txt")
mapfile -t imgs < <(cut -d' ' -f1 "$tmp/test.txt")

"$dcal" predict --checkpoint "$ck" "${imgs[@]}" > "$tmp/pred.txt" 2> "$tmp/err.txt" || { echo "FAIL: predict"; cat "$tmp/err.txt"; fail=1; }
[ "$(wc -l < "$tmp/pred.txt")" = "$n" ] || { echo "FAIL: predict printed $(wc -l < "$tmp/pred.txt") lines for $n images"; fail=1; }
grep -qE '^/.*  1\. [0-9]{3}\.[a-z]+_[a-z]+ [0-9.]+%  2\. .*  5\. [0-9]{3}\.[a-z_]+ [0-9.]+%$' "$tmp/pred.txt" ||
  { echo "FAIL: predict line format:"; head -2 "$tmp/pred.txt"; fail=1; }
"$dcal" eval --checkpoint "$ck" "${common[@]}" > "$tmp/eval.txt" 2>&1 || { echo "FAIL: eval"; cat "$tmp/eval.txt"; fail=1; }
for br in sa glca sa+glca; do
  "$dcal" predict --checkpoint "$ck" --json --branch "$br" --batch 3 "${imgs[@]}" > "$tmp/$br.jsonl" 2>/dev/null || { echo "FAIL: predict --branch $br"; fail=1; }
done
python3 - "$tmp" <<'PY' || fail=1
import json, re, sys
d = sys.argv[1]
labels = {l.split()[0]: int(l.split()[1]) for l in open(f"{d}/test.txt")}
ev = open(f"{d}/eval.txt").read()
for br, key in (("sa", "SA"), ("glca", "GLCA"), ("sa+glca", "SA\\+GLCA")):
    rows = [json.loads(l) for l in open(f"{d}/{br}.jsonl")]
    assert len(rows) == len(labels), (br, len(rows))
    for r in rows:
        assert r["branch"] == br and len(r["top"]) == 5 and abs(sum(t["prob"] for t in r["top"])) <= 1.0001
        assert [t["prob"] for t in r["top"]] == sorted((t["prob"] for t in r["top"]), reverse=True)
    acc = 100 * sum(r["top"][0]["class"] == labels[r["image"]] for r in rows) / len(rows)
    want = float(re.search(r"top-1 %s +([0-9.]+)%%" % key, ev).group(1))
    ok = abs(acc - want) < 0.006
    print(f"{'ok' if ok else 'FAIL'}: predict --branch {br} top-1 {acc:.2f}% vs eval {want:.2f}%")
    if not ok: sys.exit(1)
PY

# explain: the two PNGs (256 wide after the zoom of a 32 px input, 3 caption lines) and the JSON.
"$dcal" explain --checkpoint "$ck" --image "${imgs[0]}" --out "$tmp/runs/r" > "$tmp/ex.txt" 2>&1 || { echo "FAIL: explain"; cat "$tmp/ex.txt"; fail=1; }
stem=$(basename "${imgs[0]}" .png)
for kind in rollout topr; do
  got=$(python3 "$src/tests/png_caption.py" "$tmp/runs/r/overlay_${stem}_$kind.png")
  [ "$got" = "256 304 3" ] || { echo "FAIL: overlay_${stem}_$kind.png: width height caption-lines $got, want 256 304 3"; fail=1; }
done
python3 - "$tmp/runs/r/overlay_$stem" <<'PY' || fail=1
import json, sys
p = sys.argv[1]
j = json.load(open(f"{p}.json"))
sel, r = j["selected_tokens"], j["rollout"]
assert len(r) == 16 and len(sel) == 4 and sel == sorted(sel), (len(r), sel)
top = sorted(range(1, 17), key=lambda t: (-r[t - 1], t))[:4]
assert sorted(top) == sel, (top, sel)
assert set(j["predictions"]) == {"sa", "glca", "sa+glca"} and all(len(v) == 5 for v in j["predictions"].values())
print(f"ok: explain selected tokens {sel} = top-4 of the rollout")
PY

expect() {  # expect PATTERN -- cmd...: non-zero exit and exactly one 'dcal:' line, containing PATTERN
  local pat=$1; shift 2
  "$@" > "$tmp/out.txt" 2> "$tmp/err.txt"; local rc=$?
  if [ $rc -eq 0 ]; then echo "FAIL: '$*' succeeded"; fail=1; return; fi
  if ! grep -qF -- "$pat" "$tmp/err.txt"; then echo "FAIL: '$*': stderr lacks '$pat':"; cat "$tmp/err.txt"; fail=1; return; fi
  local lines; lines=$(grep '^dcal:' "$tmp/err.txt" | grep -vc '^dcal: WARNING: deviating')   # the tiny config's declared deviations
  if [ "$lines" != 1 ]; then echo "FAIL: '$*': $lines error lines:"; head -5 "$tmp/err.txt"; fail=1; return; fi
  echo "ok: $(grep -F -- "$pat" "$tmp/err.txt" | head -1)"
}
expect "$tmp/runs/r/nope.safetensors: no such file" -- "$dcal" predict --checkpoint "$tmp/runs/r/nope.safetensors" "${imgs[0]}"
expect "$tmp/runs/r/nope.safetensors: no such file" -- "$dcal" explain --checkpoint "$tmp/runs/r/nope.safetensors" --image "${imgs[0]}"
expect "$tmp/missing.png" -- "$dcal" predict --checkpoint "$ck" "$tmp/missing.png"
python3 -c "import zipfile,sys; z=zipfile.ZipFile(sys.argv[1],'w'); z.writestr('archive/data.pkl', b'x'*64); z.close()" "$tmp/vit.pth"
expect "not a safetensors file (a zip archive, as PyTorch .pth/.bin and NumPy .npz files are); convert ViT weights with \`dcal convert\`" -- \
  "$dcal" train "${common[@]}" --set train.run_name=p --pretrained "$tmp/vit.pth"
expect "a dcal checkpoint, not pretrained ViT weights" -- "$dcal" train "${common[@]}" --set train.run_name=p2 --pretrained "$ck"
expect "$tmp/nope.safetensors: no such file" -- "$dcal" train "${common[@]}" --set train.run_name=p3 --pretrained "$tmp/nope.safetensors"
expect "a PyTorch checkpoint, not an .npz: dump it first with tools/convert_timm.py" -- "$dcal" convert "$tmp/vit.pth" --out "$tmp/x.safetensors"
expect "a dcal checkpoint, already in dcal's format" -- "$dcal" convert "$ck" --out "$tmp/x.safetensors"
# Usage errors exit 2; --help exits 0.
for c in predict explain; do "$dcal" $c --help | grep -q "usage: dcal $c" || { echo "FAIL: $c --help"; fail=1; }; done
"$dcal" convert --help | grep -q "usage: dcal convert" || { echo "FAIL: convert --help"; fail=1; }
"$dcal" predict --checkpoint "$ck" > /dev/null 2>&1; [ $? = 2 ] || { echo "FAIL: predict without images is not a usage error"; fail=1; }
"$dcal" explain --checkpoint "$ck" > /dev/null 2>&1; [ $? = 2 ] || { echo "FAIL: explain without --image is not a usage error"; fail=1; }
"$dcal" convert "$ck" > /dev/null 2>&1; [ $? = 2 ] || { echo "FAIL: convert without --out is not a usage error"; fail=1; }
exit $fail
