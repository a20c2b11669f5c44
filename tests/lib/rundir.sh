# tests/lib/rundir.sh: what the crash tests compare between an interrupted run directory and
# an uninterrupted one (sourced by e2e_faults.sh and e2e_mpi.sh).
# Every metrics row, in order, less what depends on the clock (time, wall_s, img_s) or the process (rss_mib).
record_rows() { sed -E 's/,"(time|wall_s|img_s|rss_mib)":("[^"]*"|[-0-9.e+]+)//g' "$1/metrics.jsonl"; }
# The checkpoint files keep_last kept, and best.safetensors.
kept() { (cd "$1" && ls checkpoint-step*.safetensors best.safetensors 2>/dev/null | tr '\n' ' '); }
# Milliseconds since the epoch, to time a run and place kills inside it.
ms() { date +%s%N | cut -c1-13; }
