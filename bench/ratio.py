#!/usr/bin/env python3
"""ratio.py: the tables of a GPU benchmark run (bench/run.sh) from its logs' machine lines.

  python3 bench/ratio.py LOGDIR [--out ratio.md] [--peak-tflops 989]

Reads, in LOGDIR (file names are run.sh's contract):
  step-dcal-ckpt0-r<R>.log, step-dcal-ckpt1-r<R>.log,
  step-dcal-fa2-ckpt0-r<R>.log, step-dcal-graphs-ckpt0-r<R>.log  bench_step's "dcal: step_ms=… img_s=… peak_mib=… gflops=…"
  step-peer-eager-r<R>.log, step-peer-compile-r<R>.log,
  step-peer-ckpt-r<R>.log                                   peer.py's "peer: … step_ms=… img_s=… peak_mib=…"
  attn-*.log                                                 bench_attn's and attn_peer.py's "attn: …" lines
and writes markdown: the step table (best round of each row by step time; ratios
against the dcal row it is compared with), the attention table (TFLOP/s and ms per
implementation, case and pass) with issue 15's target ratios, and the machine lines
themselves. A row whose logs hold no machine line says so, with the log's last line.
Standard library only: runs on any python3.
"""
import argparse
import glob
import os
import re
import sys

# Step rows: (label in the table, file key, the dcal row it is compared with).
STEP_ROWS = [
    ("dcal", "dcal-ckpt0", None),
    ("dcal, per-block checkpointing", "dcal-ckpt1", None),
    ("dcal, FA2 attention forward and backward (DCAL_CUDA_ATTN=fa2)", "dcal-fa2-ckpt0", None),
    ("dcal, recorded step: forward + backward as one CUDA graph (DCAL_CUDA_GRAPHS=1)", "dcal-graphs-ckpt0", None),
    ("PyTorch eager (bf16 autocast, SDPA, fused AdamW)", "peer-eager", "dcal-ckpt0"),
    ("PyTorch + torch.compile", "peer-compile", "dcal-ckpt0"),
    ("PyTorch + per-block checkpointing", "peer-ckpt", "dcal-ckpt1"),
]
CASES = ["sa", "glca", "pwca", "rollout"]
PASSES = ["fwd", "fwdbwd"]


def machine_lines(path, prefix):
    """key=value dicts of the lines of path that start with prefix (e.g. 'dcal: ')."""
    out = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith(prefix):
                    out.append(dict(w.split("=", 1) for w in line[len(prefix):].split() if "=" in w))
    except OSError:
        pass
    return out


def last_line(path):
    try:
        with open(path, errors="replace") as f:
            lines = [l.strip() for l in f if l.strip()]
        return lines[-1][:160] if lines else "(empty log)"
    except OSError:
        return "(no log)"


def num(d, k):
    try:
        return float(d[k])
    except (KeyError, ValueError, TypeError):   # absent row or key, or not a number
        return None


def step_results(logdir):
    """file key → {'best': machine dict of the fastest round, 'rounds': n, 'why': reason when none}."""
    res = {}
    for _, key, _ in STEP_ROWS:
        prefix = "dcal: " if key.startswith("dcal") else "peer: "
        logs = sorted(glob.glob(os.path.join(logdir, f"step-{key}-r*.log")))
        runs = [m for p in logs for m in machine_lines(p, prefix)[-1:] if num(m, "step_ms")]
        if runs:
            res[key] = {"best": min(runs, key=lambda m: num(m, "step_ms")), "rounds": len(runs),
                        "spread": max(num(m, "step_ms") for m in runs) / min(num(m, "step_ms") for m in runs)}
        else:
            res[key] = {"why": last_line(logs[-1]) if logs else "not run"}
    return res


def fmt(x, spec):
    return "—" if x is None else format(x, spec)


def step_table(res, peak):
    dcal = res.get("dcal-ckpt0", {}).get("best")
    # Model GFLOP per step (bench_step's count: matrix products, backward 2× forward), for everyone's MFU.
    gflop_step = num(dcal, "gflops") * num(dcal, "step_ms") / 1e3 if dcal and num(dcal, "gflops") else None
    out = ["| system | step ms | img/s | peak MiB | MFU % | rounds | vs | dcal speed-up (their ms / dcal ms) "
           "| memory ratio (dcal / their peak) |", "|---|---|---|---|---|---|---|---|---|"]
    for label, key, vs in STEP_ROWS:
        r = res[key]
        if "best" not in r:
            out.append(f"| {label} | no result: {r['why'].replace('|', '/')} | | | | | | | |")
            continue
        m = r["best"]
        ms, mib = num(m, "step_ms"), num(m, "peak_mib")
        mfu = 100 * gflop_step / (ms / 1e3) / 1e3 / peak if gflop_step and ms else None
        other = res.get(vs, {}).get("best") if vs else None
        speed = ms / num(other, "step_ms") if other else None
        memr = num(other, "peak_mib") / mib if other and mib else None
        out.append(f"| {label} | {fmt(ms, '.1f')} | {fmt(num(m, 'img_s'), '.1f')} | {fmt(mib, '.0f')} | {fmt(mfu, '.1f')} "
                   f"| {r['rounds']} | {vs or ''} | {fmt(speed, '.2f')} | {fmt(memr, '.2f')} |")
    c0, c1 = res["dcal-ckpt0"].get("best"), res["dcal-ckpt1"].get("best")
    if c0 and c1:
        out.append("")
        out.append(f"dcal checkpointing costs {num(c1, 'step_ms') / num(c0, 'step_ms'):.2f}× the step "
                   f"(issue 14: ≤ 1.3× at ≤ 3 GiB; here {num(c1, 'peak_mib') / 1024:.2f} GiB).")
    return out


def attn_results(logdir):
    """(impl, case, pass) → the machine dict with the highest TFLOP/s; notes of skipped impls."""
    res, notes = {}, []
    for p in sorted(glob.glob(os.path.join(logdir, "attn-*.log"))):
        for m in machine_lines(p, "attn: "):
            impl = m.get("impl") or f"dcal {m.get('backend', '')} {m.get('prec', '')}".strip()
            if not m.get("impl") and m.get("attn", "dcal") != "dcal":   # bench_attn --attention cudnn
                impl += f" ({m['attn']} path)"
            if m.get("layout") == "kernel":   # attn_peer.py's inputs laid out before the clock
                impl += " (kernel only)"
            k = (impl, m.get("case"), m.get("pass"))
            if num(m, "tflops") is not None and (k not in res or num(m, "tflops") > num(res[k], "tflops")):
                res[k] = m
        with open(p, errors="replace") as f:
            notes += [l.strip() for l in f if re.match(r"attn_peer: impl=.*(skipped|unavailable)", l)]
    return res, notes


def attn_table(res, notes, step_ms):
    impls = sorted({k[0] for k in res}, key=lambda i: (not i.startswith("dcal"), i))
    cols = [(c, p) for c in CASES for p in PASSES if any(k[1:] == (c, p) for k in res)]
    out = ["| impl | " + " | ".join(f"{c} {'fwd+bwd' if p == 'fwdbwd' else p}" for c, p in cols) + " |",
           "|---|" + "---|" * len(cols)]
    for i in impls:
        cells = []
        for c, p in cols:
            m = res.get((i, c, p))
            cells.append(f"{num(m, 'tflops'):.1f} TFLOP/s ({num(m, 'ms'):.3g} ms)" if m else "—")
        out.append(f"| {i} | " + " | ".join(cells) + " |")
    out += ["", "TFLOP/s of the stated FLOPs: forward 4·B·H·Nq·Nk·hd, backward 2.5× forward (FlashAttention's count); "
            "rollout (one rollout_step_attn, of the 11 a step runs) 2·B·H·N²·(hd+1); "
            "the median of the repetitions. PyTorch's rows take q, k, v from the model's [B, N, 3D] buffer inside the timed "
            "call (GLCA's query gather and PWCA's K/V concatenation included), as dcal's kernels do; its "
            "'(kernel only)' rows get contiguous [B, H, n, hd] inputs made before the clock."]
    out += targets(res, impls, step_ms)
    if notes:
        out += ["", "Not run:"] + [f"- {n}" for n in notes]
    return out


def targets(res, impls, step_ms):
    dcal = next((i for i in impls if i.startswith("dcal")), None)
    if not dcal:
        return []
    t = lambda i, c, p: num(res.get((i, c, p)), "tflops")
    out = [""]
    sa, pw = t(dcal, "sa", "fwdbwd"), t(dcal, "pwca", "fwdbwd")
    for ref in ("cudnn (kernel only)", "cudnn", "flash (kernel only)", "flash"):
        r = t(ref, "sa", "fwdbwd")
        if sa and r:
            out.append(f"- SA forward+backward: {dcal} / PyTorch {ref} = {sa / r:.2f}× " +
                       ("(issue 15: ≥ 0.8× cuDNN, stretch > 1)" if ref.startswith("cudnn") else "(for comparison)"))
    if sa and pw:
        out.append(f"- PWCA / SA TFLOP/s (forward+backward, {dcal}) = {pw / sa:.2f} (issue 15: ≥ 0.9)")
    g = res.get((dcal, "glca", "fwdbwd"))
    if g and step_ms:
        out.append(f"- GLCA forward+backward = {num(g, 'ms'):.3g} ms = {100 * num(g, 'ms') / step_ms:.2f}% of dcal's "
                   f"{step_ms:.1f} ms step (issue 15: < 2%)")
    return out


def raw_lines(logdir):
    lines = []
    for p in sorted(glob.glob(os.path.join(logdir, "step-*.log")) + glob.glob(os.path.join(logdir, "attn-*.log"))):
        with open(p, errors="replace") as f:
            lines += [f"{os.path.basename(p)}: {l.rstrip()}" for l in f if re.match(r"(dcal|peer|attn): \S+=", l)]
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logdir")
    ap.add_argument("--out", help="write the markdown here (atomically) instead of stdout")
    ap.add_argument("--peak-tflops", type=float, default=float(os.environ.get("PEAK_TFLOPS", 989)),
                    help="dense bf16 peak for MFU (H100/H200 SXM datasheet: 989)")
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    if not os.path.isdir(a.logdir):
        sys.exit(f"ratio.py: {a.logdir}: not a folder of benchmark logs")
    steps = step_results(a.logdir)
    c0 = steps["dcal-ckpt0"].get("best")
    attn, notes = attn_results(a.logdir)
    md = [f"# {a.title or 'dcal vs PyTorch'}", "",
          "## Full training step (ViT-B/16, 448 px, micro-batch 16 + PWCA pairs; forward, backward, AdamW)", ""]
    md += step_table(steps, a.peak_tflops)
    md += ["", f"MFU: bench_step's model FLOPs (matrix products, backward 2× forward) over the step, against "
           f"{a.peak_tflops:g} TFLOP/s. dcal's step_ms is its fastest timed step (mean_ms beside it) and its peak "
           "the largest drop of free device memory; the peer's step_ms is its fastest step and its peak torch's "
           "max_memory_allocated.", "", "## Attention alone (B=16, H=12, hd=64, N=785)", ""]
    md += attn_table(attn, notes, num(c0, "step_ms") if c0 else None) if attn else ["no attention results"]
    md += ["", "## Machine lines", "", "```"] + raw_lines(a.logdir) + ["```", ""]
    text = "\n".join(md)
    if a.out:
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, a.out)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
