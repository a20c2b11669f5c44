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
exit $fail
