#!/usr/bin/env bash
# unit_cli.sh: exit codes and messages of the dcal command line.
set -u
dcal=$1; src=$2; fail=0
check() {  # check WANT_RC PATTERN -- args...
  local want=$1 pat=$2; shift 3
  local got; got=$("$dcal" "$@" 2>&1); local rc=$?
  if [ "$rc" != "$want" ]; then echo "FAIL: dcal $* -> rc $rc, want $want"; echo "$got" | head -5; fail=1; fi
  if ! grep -qF -- "$pat" <<<"$got"; then echo "FAIL: dcal $*: output lacks '$pat'"; echo "$got" | head -5; fail=1; fi
}
check 2 "usage: dcal <command>" --
check 0 "commands:" -- help
check 0 "dcal 0." -- --version
check 2 "unknown command 'trian'" -- trian
for c in train eval verify-config plan audit; do
  check 0 "usage: dcal $c" -- "$c" --help
  check 0 "usage: dcal $c" -- help "$c"
  check 2 "unknown option '--frobnicate'" -- "$c" --frobnicate
done
check 2 "needs a value" -- verify-config --config
check 2 "not both" -- verify-config --config x.yaml --dataset cub
check 2 "no config for dataset 'birds'" -- verify-config --dataset birds
check 0 "0 FAIL" -- verify-config --config "$src/configs/fgvc/cub.yaml"
check 0 "0 FAIL" -- verify-config --config="$src/configs/fgvc/aircraft.yaml"
check 1 "effective_batch" -- verify-config --config "$src/configs/fgvc/cub.yaml" --set train.micro_batch=8
check 0 "usage: dcal verify-config" -- verify-config -h
check 2 "option '--print-config' takes no value" -- verify-config --print-config=yes
check 2 "--allow-deviation: unknown rule 'nope'" -- verify-config --allow-deviation nope
check 0 "allowed by --allow-deviation" -- verify-config --config "$src/configs/fgvc/cub.yaml" --set train.micro_batch=8 --allow-deviation=effective_batch
# --data-root is the first override, before the --set ones, whatever the order on the line.
out=$("$dcal" verify-config --dataset cub --set train.seed=7 --data-root /tmp/dr 2>&1)
grep -q "override: --set data.root=/tmp/dr" <<<"$(head -2 <<<"$out" | tail -1)" || { echo "FAIL: data-root order: $out" | head -3; fail=1; }
check 2 "cannot be combined" -- train --resume r --init x.safetensors
check 2 "give --init or --pretrained, not both" -- train --init a --pretrained b
check 2 "--max-memory '8Q': expected a size" -- train --max-memory 8Q
check 1 "train: refusing to start" -- train --dataset cub --set train.micro_batch=8
exit $fail
