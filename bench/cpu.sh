#!/usr/bin/env bash
# cpu.sh: dcal's full training step against the PyTorch peer on the same cores
# (issue 13; bench/README.md). Both sides run alternately, ROUNDS rounds, with a
# fixed thread count; prints every measurement, each round's ratio, the best of each side
# and the ratio table (dcal / peer: img/s, higher is better; peak memory, lower is better).
#
#   bash bench/cpu.sh [BUILD]                # defaults below
#   IMG=448 BATCH=2 THREADS=2 ROUNDS=3 STEPS=2 bash bench/cpu.sh build
#
# Environment: IMG (224) BATCH (4) CKPT (0) THREADS (2) ROUNDS (3) STEPS timed steps per
# measurement (2) WARMUP (1) LIMIT seconds per measurement (900) PRECISIONS ("fp32 bf16") CONFIG (configs/fgvc/cub.yaml)
# DCAL_SETS (more bench_step arguments, e.g. "--set train.checkpoint_layers=3")
# PEER (bench/peer.py) PYTHON (/usr/bin/python3: Debian's python3-torch is only
# importable there) PEER_ARGS (default "--img $IMG"; "--preset tiny" for a smoke test
# with CONFIG=configs/fgvc/tiny.yaml IMG=32) OUT (a folder for the raw logs; default a temp folder).
# Machine lines parsed (last line holding step_ms= of each log):
#   dcal: step_ms=… img_s=… peak_mib=… plan_mib=…   (bench_step)
#   peer: … step_ms=… img_s=… peak_mib=…            (bench/peer.py)
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-${BUILD:-$ROOT/build}}
IMG=${IMG:-224}; BATCH=${BATCH:-4}; THREADS=${THREADS:-2}; ROUNDS=${ROUNDS:-3}
CKPT=${CKPT:-0}   # dcal's per-block checkpointing (bench_step's third argument); the peer keeps everything
STEPS=${STEPS:-2}; WARMUP=${WARMUP:-1}; PRECISIONS=${PRECISIONS:-fp32 bf16}
LIMIT=${LIMIT:-900}   # seconds per measurement: torch's bf16 autocast on a CPU without avx512_bf16 can take many minutes a step
CONFIG=${CONFIG:-$ROOT/configs/fgvc/cub.yaml}
PEER=${PEER:-$ROOT/bench/peer.py}; PYTHON=${PYTHON:-/usr/bin/python3}
OUT=${OUT:-$(mktemp -d /tmp/dcal-cpu-bench.XXXXXX)}
mkdir -p "$OUT"
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
export DCAL_PEER_THREADS=$THREADS   # the peer's torch.set_num_threads (it also reads OMP_NUM_THREADS)

[ -x "$BUILD/bench_step" ] || { echo "cpu.sh: $BUILD/bench_step not built (cmake --build $BUILD --target bench_step)"; exit 1; }

# Which sides can run: the peer needs its script, torch, and (for bf16) to accept it.
peer_ok=1; peer_why=""
if [ ! -f "$PEER" ]; then peer_ok=0; peer_why="$PEER not found"
elif ! "$PYTHON" -c "import torch" 2>/dev/null; then
    peer_ok=0; peer_why="$PYTHON cannot import torch (apt-get install -y python3-torch)"
fi
peer_help=""
[ $peer_ok = 1 ] && peer_help=$("$PYTHON" "$PEER" --help 2>&1)
peer_threads=()
grep -q -- "--threads" <<<"$peer_help" && peer_threads=(--threads "$THREADS")

echo "== cpu.sh $(date -u +%FT%TZ) img $IMG micro-batch $BATCH dcal checkpointing $CKPT threads $THREADS rounds $ROUNDS steps $STEPS (+$WARMUP warm-up)"
isa=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_bf16|amx_bf16|amx_tile)$' | tr '\n' ' ')
echo "   $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores, ISA: ${isa:-no AVX2}; load: $(cut -d' ' -f1-3 /proc/loadavg)"
[ $peer_ok = 1 ] || echo "   peer skipped: $peer_why"

# One measurement: prints its machine line's values "img_s peak_mib step_ms" or "-".
run_dcal() {   # precision round
    local log="$OUT/dcal-$1-r$2.log"
    timeout "$LIMIT" "$BUILD/bench_step" "$IMG" "$BATCH" "$CKPT" cpu "$STEPS" 0 "$1" --config "$CONFIG" --warmup "$WARMUP" \
        --set "train.threads=$THREADS" ${DCAL_SETS:-} > "$log" 2>&1
    parse "dcal:" "$log"
}
run_peer() {   # precision round
    local log="$OUT/peer-$1-r$2.log"
    timeout "$LIMIT" "$PYTHON" "$PEER" --device cpu --precision "$1" --batch "$BATCH" --steps "$STEPS" --warmup "$WARMUP" \
        "${peer_threads[@]}" ${PEER_ARGS:---img $IMG} > "$log" 2>&1
    parse "peer:" "$log"
}
parse() {   # prefix log → "img_s peak_mib step_ms" from the last machine line, or "-"
    local line; line=$(grep "^$1 .*step_ms=" "$2" | tail -1)
    if [ -z "$line" ]; then echo "-"; return; fi
    awk '{for (i = 2; i <= NF; i++) {split($i, kv, "="); v[kv[1]] = kv[2]}
          print v["img_s"], v["peak_mib"], v["step_ms"]}' <<<"$line"
}

declare -A best refused paired   # side/precision → "img_s peak_mib step_ms" of its fastest round; precision → rounds' ratios
keep_best() {     # key "img_s peak step"
    [ "$2" = "-" ] && return
    local old=${best[$1]:-}
    if [ -z "$old" ] || awk -v a="${2%% *}" -v b="${old%% *}" 'BEGIN{exit !(a > b)}'; then best[$1]=$2; fi
}

for r in $(seq 1 "$ROUNDS"); do
    for p in $PRECISIONS; do
        if [ -z "${refused[$p]:-}" ]; then
            d=$(run_dcal "$p" "$r"); keep_best "dcal/$p" "$d"
            [ "$r" = 1 ] && [ "$d" != "-" ] && echo "   dcal backend: $(head -1 "$OUT/dcal-$p-r$r.log")"
            printf "   round %d %-4s dcal: %s\n" "$r" "$p" "$d"
            if [ "$d" = "-" ]; then   # a precision the backend refuses is not tried again
                refused[$p]=1; printf "      (%s)\n" "$(grep -m1 -E 'bench_step|dcal:' "$OUT/dcal-$p-r$r.log")"
            fi
        fi
        [ $peer_ok = 1 ] || continue
        e=$(run_peer "$p" "$r"); keep_best "peer/$p" "$e"
        printf "   round %d %-4s peer: %s\n" "$r" "$p" "${e:--}"
        [ "$e" = "-" ] && printf "      (%s)\n" "$(tail -1 "$OUT/peer-$p-r$r.log" | grep . || echo "no result within ${LIMIT} s or no output")"
        # The two sides of one round ran minutes apart: on a noisy machine their ratio is the
        # steadier figure, so every round's is kept beside the best-of-each table.
        if [ -z "${refused[$p]:-}" ] && [ "$d" != "-" ] && [ "$e" != "-" ]; then
            pr=$(awk -v d="$d" -v e="$e" 'BEGIN{split(d, a, " "); split(e, b, " "); printf "%.2f %.2f", a[1] / b[1], a[2] / b[2]}')
            paired[$p]="${paired[$p]:-}${paired[$p]:+, }${pr% *}/${pr#* }"
            printf "   round %d %-4s dcal / peer: img/s %s, peak %s\n" "$r" "$p" "${pr% *}" "${pr#* }"
        fi
    done
done

echo "== best of $ROUNDS (img/s, peak MiB, step ms); raw logs in $OUT; load now: $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-5s %-5s %10s %10s %10s\n" side prec img/s peak_MiB step_ms
for p in $PRECISIONS; do for s in dcal peer; do
    v=${best[$s/$p]:-}; [ -n "$v" ] && printf "%-5s %-5s %10s %10s %10s\n" $s $p $v
done; done
for p in $PRECISIONS; do
    [ -n "${paired[$p]:-}" ] && echo "== $p, each round's dcal / peer (img/s/peak): ${paired[$p]}"
done
echo "== ratios dcal / peer, best of each (img/s: target >= 1.2 fp32; peak memory: target <= 0.5)"
printf "%-12s %-12s %8s %8s\n" dcal peer img/s peak
for dp in $PRECISIONS; do for pp in $PRECISIONS; do
    d=${best[dcal/$dp]:-}; e=${best[peer/$pp]:-}
    [ -n "$d" ] && [ -n "$e" ] || continue
    awk -v dp="$dp" -v pp="$pp" -v d="$d" -v e="$e" 'BEGIN{split(d, a, " "); split(e, b, " ");
        printf "dcal %-7s peer %-7s %8.2f %8.2f\n", dp, pp, a[1] / b[1], a[2] / b[2]}'
done; done
