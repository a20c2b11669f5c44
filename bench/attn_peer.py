#!/usr/bin/python3
"""attn_peer.py: PyTorch's attention kernels on dcal's attention shapes (issue 15),
the peer of build/bench_attn: the same three calls, the same FLOP count and the
same machine line, one line per implementation, case and pass.

  sa    N queries against N keys
  glca  1+K queries gathered from the image's tokens (torch.gather) against N keys
  pwca  N queries against 2N keys: the image's and the distractor's (qkv2[pair]),
        concatenated with torch.cat, as PyTorch must (dcal reads two buffers)

Two layouts (--layouts): model, where q, k, v are views of one [B, N, 3D] tensor as in
the model (and bench_attn), so the gather and the concatenation are part of each timed
call, and their backward of forward + backward; kernel, where contiguous [B, H, n, hd]
tensors (gathered, concatenated) are made before the clock: the attention kernel alone. Implementations (--impls): SDPA restricted to one backend
(flash, cudnn, efficient, math: torch.nn.attention.sdpa_kernel, or the older
torch.backends.cuda.sdp_kernel) and naive (softmax(QKᵀ/√d)·V with the maps kept, as
the public DCAL code does). One the torch or the inputs cannot run is skipped with a
line saying why. A torch without SDPA (Debian's 1.13) runs naive alone.

FLOPs as bench_attn states them: forward 4·B·H·Nq·Nk·hd; backward 2.5× forward
(FlashAttention's count), so forward + backward is 3.5×. Timed with CUDA events
(perf_counter on the CPU) around each repetition; the median is reported. err is
‖out − ref‖/‖ref‖ against naive attention in float32 on the same inputs.

  python3 bench/attn_peer.py                                   # cuda, bf16, ViT-B/16 at 448 px
  /usr/bin/python3 bench/attn_peer.py --device cpu --B 1 --N 17 --H 2 --hd 8 --reps 1 --warmup 0

Machine line (keys stable; bench/ratio.py parses them):
  attn: impl=flash case=sa pass=fwd ms=… min_ms=… tflops=… gflop=… B=… H=… hd=… N=… Nq=… Nk=… reps=… prec=bf16 device=cuda torch=… layout=model|kernel err=…
"""
import argparse
import contextlib
import math
import statistics
import sys
import time
import warnings

torch = F = None   # imported after the arguments are checked (import_torch): an import takes seconds

SDPA_NAMES = {"flash": "FLASH_ATTENTION", "cudnn": "CUDNN_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "math": "MATH"}
IMPLS = ["flash", "cudnn", "efficient", "math", "naive"]


def sdpa_restricted(impl):
    """(context-manager factory, None) restricting SDPA to one backend, or (None, why not)."""
    if not hasattr(F, "scaled_dot_product_attention"):
        return None, f"torch {torch.__version__} has no F.scaled_dot_product_attention (torch >= 2.0)"
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:   # torch 2.0-2.2: the older context manager, no cuDNN backend
        if impl == "cudnn":
            return None, f"torch {torch.__version__} has no cuDNN SDPA backend (torch.nn.attention, torch >= 2.3)"
        flags = dict(enable_flash=impl == "flash", enable_math=impl == "math", enable_mem_efficient=impl == "efficient")
        return (lambda: torch.backends.cuda.sdp_kernel(**flags)), None
    if not hasattr(SDPBackend, SDPA_NAMES[impl]):
        return None, f"torch {torch.__version__} has no SDPBackend.{SDPA_NAMES[impl]}"
    backend = getattr(SDPBackend, SDPA_NAMES[impl])
    return (lambda: sdpa_kernel(backend)), None


def naive_attention(q, k, v):
    s = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
    return s.softmax(dim=-1) @ v


def split_heads(t, H):
    B, n, D = t.shape
    return t.reshape(B, n, H, D // H).transpose(1, 2)


def case_inputs(case, qkv, qkv2, idx, pair, H):
    """q, k, v [B, H, ·, hd] of one case, built from the [B, N, 3D] tensors inside the timed call."""
    D = qkv.shape[-1] // 3
    q, k, v = (split_heads(t, H) for t in qkv.split(D, dim=-1))
    if case == "glca":
        qt = torch.gather(qkv[..., :D], 1, idx[..., None].expand(-1, -1, D))
        q = split_heads(qt, H)
    elif case == "pwca":
        k2, v2 = (split_heads(t, H) for t in qkv2[pair, :, D:].split(D, dim=-1))
        k, v = torch.cat([k, k2], dim=2), torch.cat([v, v2], dim=2)
    return q, k, v


def make_data(a, dev, dtype):
    g = torch.Generator().manual_seed(7)
    B, N, D = a.B, a.N, a.H * a.hd
    qkv = torch.randn(B, N, 3 * D, generator=g).to(dev, dtype)
    qkv2 = torch.randn(B, N, 3 * D, generator=g).to(dev, dtype)
    # GLCA: CLS then K distinct patch tokens, ascending (as topk_select writes them).
    idx = torch.stack([torch.cat([torch.zeros(1, dtype=torch.long),
                                  torch.sort(torch.randperm(N - 1, generator=g)[:a.K] + 1).values]) for _ in range(B)])
    pair = (torch.arange(B) + 1) % B
    return qkv, qkv2, idx.to(dev), pair.to(dev)


class Timer:
    def __init__(self, dev):
        self.cuda = dev.type == "cuda"

    def __call__(self, fn):
        if self.cuda:
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            torch.cuda.synchronize()
            return s.elapsed_time(e) / 1e3
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0


def inputs_maker(a, case, data, layout, bwd):
    """(make, leaves): make() builds q, k, v for one timed call; leaves get the gradients.
    layout 'model': from the [B, N, 3D] tensors inside the call (views; GLCA's gather and
    PWCA's concatenation included). 'kernel': contiguous [B, H, ·, hd] tensors made before
    the clock, so the call is the attention kernel alone."""
    qkv, qkv2, idx, pair = data
    if layout == "model":
        for t in (qkv, qkv2):
            t.requires_grad_(bwd)
        return (lambda: case_inputs(case, qkv, qkv2, idx, pair, a.H)), (qkv, qkv2)
    with torch.no_grad():
        qkv_ = [t.detach().contiguous().requires_grad_(bwd) for t in case_inputs(case, qkv, qkv2, idx, pair, a.H)]
    return (lambda: qkv_), qkv_


def measure(a, timer, attend, make, leaves, bwd, dout):
    """Median and min seconds of `reps` calls after `warmup`; the output of the last one."""
    out = []

    def once():
        if bwd:
            for t in leaves:
                t.grad = None
        o = attend(*make())
        if bwd:
            o.backward(dout)
        out[:] = [o]

    for _ in range(a.warmup):
        timer(once)
    ts = sorted(timer(once) for _ in range(a.reps))
    return statistics.median(ts), ts[0], out[0]


def reference(a, data):
    """float32 naive attention of every case, on the same (rounded) inputs."""
    qkv, qkv2, idx, pair = (t.detach().float() if t.is_floating_point() else t for t in data)
    with torch.no_grad():
        return {c: naive_attention(*case_inputs(c, qkv, qkv2, idx, pair, a.H)) for c in a.cases}


def rel_err(o, ref):
    o = o.detach().float()
    return ((o - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def run_impl(a, impl, dev, dtype, data, refs, timer):
    if impl == "naive":
        attend, ctx = naive_attention, contextlib.nullcontext
    else:
        ctx, why = sdpa_restricted(impl)
        if ctx is None:
            print(f"attn_peer: impl={impl}: skipped: {why}", flush=True)
            return
        attend = F.scaled_dot_product_attention
    for case in a.cases:
        for layout in a.layouts:
            for bwd in [p == "fwdbwd" for p in a.passes]:
                run_one(a, impl, attend, ctx, case, layout, bwd, dev, dtype, data, refs, timer)


def run_one(a, impl, attend, ctx, case, layout, bwd, dev, dtype, data, refs, timer):
    Nq = a.K + 1 if case == "glca" else a.N
    Nk = 2 * a.N if case == "pwca" else a.N
    dout = torch.randn(a.B, a.H, Nq, a.hd, generator=torch.Generator().manual_seed(3)).to(dev, dtype)
    pas = "fwdbwd" if bwd else "fwd"
    try:
        with warnings.catch_warnings(record=True) as w, ctx():
            warnings.simplefilter("always")
            make, leaves = inputs_maker(a, case, data, layout, bwd)
            med, mn, out = measure(a, timer, attend, make, leaves, bwd, dout)
    except Exception as e:   # RuntimeError "No available kernel" (the backend refuses these inputs), OOM, ...:
        # one line, and the other implementations still run (a device call is not repeated lightly)
        why = " / ".join(str(x.message).splitlines()[0] for x in w[:2]) or f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
        print(f"attn_peer: impl={impl} case={case} pass={pas} layout={layout}: unavailable ({why[:300]})", flush=True)
        return
    gflop = 4.0 * a.B * a.H * Nq * Nk * a.hd * (3.5 if bwd else 1.0) / 1e9
    print(f"attn: impl={impl} case={case} pass={pas} ms={med * 1e3:.6g} min_ms={mn * 1e3:.6g} "
          f"tflops={gflop / med / 1e3:.6g} gflop={gflop:.6g} B={a.B} H={a.H} hd={a.hd} N={a.N} Nq={Nq} Nk={Nk} "
          f"reps={a.reps} prec={a.dtype} device={dev.type} torch={torch.__version__} layout={layout} "
          f"err={rel_err(out, refs[case]):.3g}", flush=True)


def parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--impls", default="flash,cudnn,efficient,math", help="comma-separated: " + ",".join(IMPLS))
    ap.add_argument("--cases", default="sa,glca,pwca")
    ap.add_argument("--passes", default="fwd,fwdbwd")
    ap.add_argument("--layouts", default="model,kernel",
                    help="model: q/k/v from the [B,N,3D] buffer inside the call (gather, concat included); "
                         "kernel: contiguous [B,H,n,hd] inputs made before the clock")
    for k, v in dict(B=16, H=12, hd=64, N=785, reps=20, warmup=3).items():
        ap.add_argument(f"--{k}", type=int, default=v)
    ap.add_argument("--K", type=int, default=None, help="GLCA's selected tokens (default floor(0.1·(N−1)))")
    a = ap.parse_args()
    a.K = a.K if a.K is not None else max(1, int(math.floor(0.1 * (a.N - 1) + 1e-9)))
    for opt, val, allowed in (("impls", a.impls, IMPLS), ("cases", a.cases, ["sa", "glca", "pwca"]),
                              ("passes", a.passes, ["fwd", "fwdbwd"]), ("layouts", a.layouts, ["model", "kernel"])):
        bad = [x for x in val.split(",") if x not in allowed]
        if bad:
            ap.error(f"--{opt}: '{bad[0]}' is not one of {','.join(allowed)}")
        setattr(a, opt, val.split(","))
    if min(a.B, a.H, a.hd, a.reps) < 1 or a.N < 2 or a.warmup < 0 or not 1 <= a.K < a.N:
        ap.error("--B, --H, --hd, --reps must be >= 1, --N >= 2, --warmup >= 0, 1 <= --K < N")
    return a


def import_torch():
    global torch, F
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        sys.exit(f"attn_peer: cannot import torch ({e}); install python3-torch or run under a python that has it")


def main():
    a = parse()
    import_torch()
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("attn_peer: --device cuda: torch sees no CUDA device (--device cpu for a smoke test)")
    dev, dtype = torch.device(a.device), {"bf16": torch.bfloat16, "fp32": torch.float32}[a.dtype]
    name = torch.cuda.get_device_name() if a.device == "cuda" else "cpu"
    cudnn = torch.backends.cudnn.version() if a.device == "cuda" else None
    print(f"attn_peer: torch {torch.__version__} on {name} (cuda {torch.version.cuda}, cudnn {cudnn}) {a.dtype}")
    impls = a.impls
    if not hasattr(F, "scaled_dot_product_attention") and "naive" not in impls:
        print(f"attn_peer: torch {torch.__version__} has no SDPA (torch >= 2.0): impl=naive instead of {','.join(impls)}")
        impls = ["naive"]
    data = make_data(a, dev, dtype)
    refs = reference(a, data)
    timer = Timer(dev)
    for impl in impls:
        run_impl(a, impl, dev, dtype, data, refs, timer)


if __name__ == "__main__":
    main()
