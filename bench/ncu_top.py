#!/usr/bin/env python3
"""ncu_top.py: the ten most expensive kernels of one training step from Nsight Compute's CSV
(tools/gpu-check.sh runs ncu twice on `bench_step 448 16 0 cuda 1 0 --warmup 0`):

  python3 bench/ncu_top.py TIME.csv [DETAIL.csv] [--top 10] [--out ncu-top.md]

TIME.csv    every kernel of the step, metric gpu__time_duration.sum (one cheap pass each)
DETAIL.csv  one launch per launch configuration (--filter-mode per-launch-config
            --launch-count 1) with the detail metrics; joined on (kernel, grid, block)

Both are `ncu --csv --page raw` output (units scaled back to ns and bytes from the units row) (ncu's own ==PROF== lines before
the header are skipped; a units row after it is skipped). Per kernel configuration: launches,
total time in the step, share, mean time, and from the detail sample: DRAM GB/s, TFLOP/s
(tensor-path ops + fp32 FFMA·2/FADD/FMUL, where ncu reports them), SM throughput, achieved
occupancy, tensor-pipe utilisation, and the floor: max(DRAM bytes / BW, ops / peak) with the
ceilings measured on an H200 here (KINDS.md: 4.3 TB/s copy, ~790 TFLOP/s bf16 GEMM; tf32 half
of bf16, fp32 67 TFLOP/s datasheet), overridable by --bw, --bf16, --tf32, --fp32 (units /s).
Standard library only.
"""
import argparse
import csv
import io
import os
import sys

TIME = "gpu__time_duration.sum"
OCC = "sm__warps_active.avg.pct_of_peak_sustained_active"
SM = "sm__throughput.avg.pct_of_peak_sustained_elapsed"
TENSOR_UTIL = ["sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active",
               "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active",
               "sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active"]
BF16_OPS = ["sm__ops_path_tensor_src_bf16_dst_fp32.sum", "sm__ops_path_tensor_src_bf16_dst_fp32_sparsity_off.sum"]
TF32_OPS = ["sm__ops_path_tensor_src_tf32_dst_fp32.sum", "sm__ops_path_tensor_src_tf32_dst_fp32_sparsity_off.sum"]
SCALE = {"usecond": 1e3, "msecond": 1e6, "second": 1e9, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "Tbyte": 1e12}
FFMA, FADD, FMUL = ("smsp__sass_thread_inst_executed_op_%s_pred_on.sum" % o for o in ("ffma", "fadd", "fmul"))


def read_csv(path):
    """Rows (dicts) of an ncu raw CSV; [] when the file has no header row."""
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return []
    at = text.find('"ID",')
    if at < 0:
        return []
    rows = list(csv.DictReader(io.StringIO(text[at:])))
    units = next((r for r in rows if not (r.get("ID") or "").strip()), {})
    out = [r for r in rows if (r.get("ID") or "").strip().isdigit()]
    for r in out:   # to base units (ns, bytes) where ncu scaled a column (no --print-units base)
        for k, u in units.items():
            if u in SCALE and r.get(k) not in (None, "", "n/a"):
                try:
                    r[k] = repr(float(r[k].replace(",", "")) * SCALE[u])
                except ValueError:
                    pass
    return out


def val(row, names):
    """The first of names (a metric or a list of alternatives) present in row, as a float; None if none."""
    for n in [names] if isinstance(names, str) else names:
        v = (row or {}).get(n)
        if v not in (None, "", "n/a"):
            try:
                return float(v.replace(",", ""))
            except ValueError:
                pass
    return None


def key(row):
    return (row.get("Kernel Name", "?"), row.get("Grid Size", ""), row.get("Block Size", ""))


def aggregate(rows):
    """(kernel, grid, block) → [launches, total ns]."""
    agg = {}
    for r in rows:
        t = val(r, TIME)
        if t is None:
            continue
        a = agg.setdefault(key(r), [0, 0.0])
        a[0] += 1
        a[1] += t
    return agg


def ops(d):
    """Arithmetic of one launch: (bf16 tensor ops, tf32 tensor ops, fp32 FLOPs), None parts absent."""
    ff, fa, fm = val(d, FFMA), val(d, FADD), val(d, FMUL)
    fp32 = 2 * ff + (fa or 0) + (fm or 0) if ff is not None else None
    return val(d, BF16_OPS), val(d, TF32_OPS), fp32


def row_md(i, k, n, tot, total, d, peaks):
    name = k[0] if len(k[0]) <= 60 else k[0][:57] + "..."
    cells = [str(i), f"`{name}`", f"{k[1]} × {k[2]}", str(n), f"{tot / 1e6:.3f}", f"{100 * tot / total:.1f}",
             f"{tot / n / 1e3:.1f}"]
    dt = val(d, TIME)
    dram = val(d, "dram__bytes.sum")
    if dram is None and val(d, "dram__bytes_read.sum") is not None:
        dram = val(d, "dram__bytes_read.sum") + (val(d, "dram__bytes_write.sum") or 0)
    b16, t32, f32 = ops(d)
    flops = sum(x for x in (b16, t32, f32) if x) if any(x is not None for x in (b16, t32, f32)) else None
    gbs = dram / dt if dram is not None and dt else None            # bytes/ns = GB/s
    tfl = flops / dt / 1e3 if flops is not None and dt else None      # ops/ns / 1e3 = TFLOP/s
    floor = None
    if dram is not None or flops is not None:
        t_mem = (dram or 0) / peaks.bw * 1e9
        t_ops = ((b16 or 0) / peaks.bf16 + (t32 or 0) / peaks.tf32 + (f32 or 0) / peaks.fp32) * 1e9
        floor = max(t_mem, t_ops)   # ns
    f = lambda x, s: "—" if x is None else format(x, s)
    cells += [f(gbs, ".0f"), f(tfl, ".1f"), f(val(d, SM), ".0f"), f(val(d, OCC), ".0f"), f(val(d, TENSOR_UTIL), ".0f"),
              f(floor / 1e3 if floor is not None else None, ".1f"),
              f(dt / floor if floor and dt else None, ".1f")]
    return "| " + " | ".join(cells) + " |"


def table(time_rows, detail_rows, top, peaks):
    agg = aggregate(time_rows)
    if not agg:   # no timing pass: rank the detail sample alone (one launch per configuration)
        agg = aggregate(detail_rows)
    detail = {key(r): r for r in detail_rows}
    total = sum(t for _, t in agg.values())
    if not total:
        return ["no kernel times in the ncu output"]
    out = [f"Profiled kernels: {sum(n for n, _ in agg.values())} launches, {total / 1e6:.2f} ms of kernel time "
           f"(each kernel alone under ncu, caches flushed in the detail pass: not the step's wall time).",
           "", "| # | kernel | grid × block | launches | total ms | % | mean µs | DRAM GB/s | TFLOP/s | SM % "
           "| occupancy % | tensor pipe % | floor µs | time / floor |", "|" + "---|" * 14]
    ranked = sorted(agg.items(), key=lambda kv: -kv[1][1])[:top]
    for i, (k, (n, tot)) in enumerate(ranked, 1):
        out.append(row_md(i, k, n, tot, total, detail.get(k), peaks))
    out += ["", f"Detail columns from one launch of each configuration. Floor: max(DRAM bytes / {peaks.bw / 1e12:g} TB/s, "
            f"bf16 tensor ops / {peaks.bf16 / 1e12:g} + tf32 / {peaks.tf32 / 1e12:g} + fp32 FLOPs / "
            f"{peaks.fp32 / 1e12:g} TFLOP/s); — where ncu did not report the metric."]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("time_csv")
    ap.add_argument("detail_csv", nargs="?")
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--out")
    ap.add_argument("--bw", type=float, default=4.3e12)
    ap.add_argument("--bf16", type=float, default=790e12)
    ap.add_argument("--tf32", type=float, default=395e12)
    ap.add_argument("--fp32", type=float, default=67e12)
    a = ap.parse_args()
    t, d = read_csv(a.time_csv), read_csv(a.detail_csv) if a.detail_csv else []
    if not t and not d:
        sys.exit(f"ncu_top.py: {a.time_csv}: no ncu CSV rows (no \"ID\" header line)")
    text = "\n".join(["# Top kernels of one dcal training step (Nsight Compute)", ""] + table(t, d, a.top, a)) + "\n"
    if a.out:
        with open(a.out + ".tmp", "w") as f:
            f.write(text)
        os.replace(a.out + ".tmp", a.out)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
