#!/usr/bin/env bash
# e2e_report.sh: report.html in a real browser. A tiny run writes it at its
# end, with the attention overlays of 4 test images (overlay_<image>_rollout.png
# and _topr.png, each captioned: SA, GLCA, SA+GLCA and the true class); `dcal
# report` remakes it with one more overlay (overlay_*.png) present. Headless Chromium loads the page with no console message (a
# Content-Security-Policy violation, i.e. anything fetched or scripted, is
# one), renders a screenshot, and its DOM holds: one polyline point per
# logged step in each curve (loss, lr, img/s, memory: the train rows of
# metrics.jsonl; SA, GLCA, SA+GLCA: its test eval rows), the accuracy table,
# every overlay embedded as a data: URI of the file's bytes, in name order, the compliance
# table and the manifest. Usage errors of `dcal report` are one line.
# Skipped (77) without Chromium (Debian package chromium) or python3.
# DCAL_REPORT_SHOT=FILE keeps the screenshot.
set -eu
dcal=$1; src=$2
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "skip: no chromium (apt-get install chromium)"; exit 77; }
py=$(command -v python3 || true)
[ -n "$py" ] || { echo "skip: no python3 to read the DOM"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dcal-report.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
fail=0
"$dcal" make-synthetic --out "$tmp/data" --classes 10 --per-class 8 --test-per-class 2 --img 36 >/dev/null
"$dcal" train --config "$src/configs/fgvc/tiny.yaml" --set data.root="$tmp/data" --set train.out_dir="$tmp/runs" \
  --set train.run_name=r --set train.eval_every=1 > "$tmp/train.txt" 2>&1 || { cat "$tmp/train.txt"; exit 1; }
run="$tmp/runs/r"
[ -s "$run/report.html" ] || { echo "FAIL: dcal train wrote no report.html"; exit 1; }
grep -qx "dcal: attention overlays of 4 test images: $run/overlay_\*.png" "$tmp/train.txt" ||
  { echo "FAIL: train did not report its overlays:"; cat "$tmp/train.txt"; fail=1; }
# The test split's images 0, 5, 10, 15 (of 20, in id order): two PNGs each, 4 caption lines.
mapfile -t want < <(paste -d' ' "$tmp/data/images.txt" "$tmp/data/train_test_split.txt" |
  awk '$4 == 0 {print $2}' | awk 'NR % 5 == 1' | xargs -n1 basename | sed 's/\.png$//')
for stem in "${want[@]}"; do for kind in rollout topr; do
  got=$(python3 "$src/tests/png_caption.py" "$run/overlay_${stem}_$kind.png" 2>&1)
  [ "$got" = "256 316 4" ] || { echo "FAIL: overlay_${stem}_$kind.png: width height caption-lines $got, want 256 316 4"; fail=1; }
done; done
[ "$(ls "$run" | grep -c '^overlay_.*\.png$')" = 8 ] || { echo "FAIL: overlays in $run:"; ls "$run"; fail=1; }
[ "$(grep -o 'data:image/png;base64,' "$run/report.html" | wc -l)" = 8 ] || { echo "FAIL: train's report embeds $(grep -o 'data:image/png;base64,' "$run/report.html" | wc -l) overlays, want 8"; fail=1; }
# An overlay as `dcal explain` leaves one (a 1x1 PNG here).
echo "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==" \
  | base64 -d > "$run/overlay_test.png"
out=$("$dcal" report "$run") || { echo "FAIL: dcal report exited $?"; exit 1; }
[ "$out" = "dcal: wrote $run/report.html" ] || { echo "FAIL: dcal report said: $out"; fail=1; }
rc=0; err=$("$dcal" report "$tmp/nope" 2>&1) || rc=$?
[ $rc = 1 ] && [ "$err" = "dcal: report: $tmp/nope: no such run directory (give runs/NAME)" ] \
  || { echo "FAIL: report of a missing directory: exit $rc: $err"; fail=1; }
rc=0; err=$("$dcal" report 2>&1) || rc=$?
[ $rc = 2 ] || { echo "FAIL: report without a directory: exit $rc: $err"; fail=1; }

t0=$(date +%s)
timeout 120 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --enable-logging=stderr --v=0 \
  --window-size=1280,1600 --screenshot="$tmp/report.png" --dump-dom "file://$run/report.html" \
  > "$tmp/dom.html" 2> "$tmp/browser.log" || { echo "FAIL: chromium exited $?"; tail -20 "$tmp/browser.log"; exit 1; }
echo "chromium: $(( $(date +%s) - t0 )) s"
if grep -q ':CONSOLE' "$tmp/browser.log"; then echo "FAIL: the page logged to the console:"; grep ':CONSOLE' "$tmp/browser.log"; fail=1; fi
[ -n "${DCAL_REPORT_SHOT:-}" ] && cp "$tmp/report.png" "$DCAL_REPORT_SHOT"

"$py" - "$run" "$tmp/dom.html" "$tmp/report.png" <<'PY' || fail=1
import base64, html.parser, json, os, struct, sys
run, dom, shot = sys.argv[1:4]
rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
n_train = sum(r["kind"] == "train" for r in rows)
n_eval = sum(r["kind"] == "eval" and r.get("split", "test") == "test" for r in rows)
want = {("chart-loss", "loss"): n_train, ("chart-lr", "lr"): n_train, ("chart-img-s", "img/s"): n_train,
        ("chart-memory", "peak RSS MiB"): n_train, ("chart-acc", "SA"): n_eval, ("chart-acc", "GLCA"): n_eval,
        ("chart-acc", "SA+GLCA"): n_eval}
class Dom(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.svg = None; self.curves = {}; self.imgs = []; self.ids = set(); self.tr = 0; self.title = ""; self.t = False
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a: self.ids.add(a["id"])
        if tag == "svg": self.svg = a.get("id")
        if tag == "polyline":
            pts = a["points"].split()
            self.curves[(self.svg, a["data-series"])] = (len(pts), int(a["data-points"]))
        if tag == "img": self.imgs.append(a.get("src", ""))
        if tag == "tr": self.tr += 1
        self.t = tag == "title"
    def handle_data(self, d):
        if self.t and not self.title: self.title = d
d = Dom(); d.feed(open(dom).read())
ok = True
for key, n in want.items():
    got = d.curves.get(key)
    if got != (n, n):
        print("FAIL: curve %s/%s: %s points (points, data-points), want %d" % (key[0], key[1], got, n)); ok = False
names = sorted(f for f in os.listdir(run) if f.startswith("overlay_") and f.endswith(".png"))
pngs = ["data:image/png;base64," + base64.b64encode(open(os.path.join(run, f), "rb").read()).decode() for f in names]
if len(names) != 9 or d.imgs != pngs:
    print("FAIL: overlays %s not embedded as their bytes in name order:" % names, [i[:60] for i in d.imgs]); ok = False
if d.tr != n_eval + 1: print("FAIL: accuracy table has %d rows, want %d" % (d.tr, n_eval + 1)); ok = False
for i in ("compliance", "manifest", "acc-table"):
    if i not in d.ids: print("FAIL: no #%s in the page" % i); ok = False
if d.title != "dcal run r": print("FAIL: title %r" % d.title); ok = False
head = open(shot, "rb").read(24)
w, h = struct.unpack(">II", head[16:24])
if head[:8] != b"\x89PNG\r\n\x1a\n" or (w, h) != (1280, 1600) or os.path.getsize(shot) < 20000:
    print("FAIL: screenshot %dx%d, %d bytes" % (w, h, os.path.getsize(shot))); ok = False
if ok: print("ok: %d train rows, %d eval rows: every curve has one point per row; %d overlays, tables, screenshot %dx%d" % (n_train, n_eval, len(names), w, h))
sys.exit(0 if ok else 1)
PY
[ $fail = 0 ]
