#!/usr/bin/python3
"""peer.py: the PyTorch peer of dcal's training step (docs/MODEL.md), for
side-by-side speed and memory measurements and a numerical cross-check.

The same model and the same step as `dcal train`: ViT pre-LN SA blocks, the
attention rollout (no gradient), top-K selection, GLCA (own weights), PWCA
(SA's weights, k2/v2 from the distractor's SA hidden state with gradient, one
softmax over 2N keys), three heads, the uncertainty-weighted loss, AdamW.
Plain PyTorch only (no timm); runs on Debian's python3-torch 1.13 and on a
current PyPI torch.

  bench:  /usr/bin/python3 bench/peer.py --device cpu --precision fp32 --img 224 --batch 4 --steps 3
  check:  /usr/bin/python3 bench/peer.py --check /tmp/pd.safetensors
          (a `dcal train --dump-step` file of configs/fgvc/tiny.yaml; exit 1 when
          the step differs beyond 1e-4 in logits/CE/loss or 1e-3 in gradients)

  cuda:   python3 bench/peer.py --device cuda --precision bf16 --attn sdpa --img 448 --batch 16 [--compile]
          [--checkpoint-blocks]   (issue 14's rows: eager, torch.compile, per-block checkpointing;
          AdamW is torch's fused kernel on CUDA where the torch has it: adamw=fused)

One line per benchmark run, parsed by bench/cpu.sh and bench/ratio.py (step_ms=, img_s=, peak_mib=;
step_ms is the fastest timed step, median_ms beside it; peak_mib on CUDA is torch's max_memory_allocated):
  peer: device=cpu precision=fp32 attn=naive img=224 batch=4 step_ms=... img_s=... peak_mib=... torch=1.13.1 threads=2 preset=vit_b16 adamw=plain
"""
import argparse
import inspect
import json
import math
import re
import resource
import statistics
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# Model shapes (MODEL.md §1-2; tiny = configs/fgvc/tiny.yaml). lr is the config's.
PRESETS = {
    "vit_b16": dict(patch=16, dim=768, heads=12, depth=12, mlp=3072, glca=1, pwca=12, top_r=0.10,
                    classes=200, lr=5e-4 / 512 * 16),
    "tiny": dict(patch=8, dim=32, heads=2, depth=3, mlp=64, glca=1, pwca=3, top_r=0.25, classes=10, lr=1e-3, img=32),
}
LN_EPS = 1e-6
HAVE_SDPA = hasattr(F, "scaled_dot_product_attention")


def topk_count(top_r, n_tokens):
    # dcal's config_topk: floor with a 1e-9 guard (0.1·784 = 78.4 style roundoff), at least 1.
    return max(1, int(math.floor(top_r * (n_tokens - 1) + 1e-9)))


def attend(q, k, v, use_sdpa, keep_probs):
    """softmax(q kᵀ/√d) v over [B, H, n, hd]; with keep_probs also the head-mean
    probabilities (detached), as the public DCAL code keeps its N×N maps."""
    if use_sdpa:
        return F.scaled_dot_product_attention(q, k, v), None
    s = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
    p = s.softmax(dim=-1)
    return p @ v, (p.detach().float().mean(dim=1) if keep_probs else None)


class Attn(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)   # rows q | k | v, heads contiguous inside each
        self.proj = nn.Linear(dim, dim)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()   # exact (erf)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def split_heads(t, heads):
    B, n, D = t.shape
    return t.reshape(B, n, heads, D // heads).transpose(1, 2)


def merge_heads(t):
    B, H, n, hd = t.shape
    return t.transpose(1, 2).reshape(B, n, H * hd)


class Block(nn.Module):
    """A pre-LN ViT block; its parameter names are timm's (blocks.{i}.*)."""

    def __init__(self, dim, heads, mlp):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attn(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, mlp)

    def finish(self, x_res, a):
        h = x_res + self.attn.proj(merge_heads(a))
        return h + self.mlp(self.norm2(h))

    def sa(self, x, use_sdpa, keep_probs):
        """SA: returns (output, q, k, v, head-mean probs or None); k, v [B,H,N,hd] feed PWCA."""
        H = self.attn.heads
        q, k, v = self.attn.qkv(self.norm1(x)).chunk(3, dim=-1)
        q, k, v = split_heads(q, H), split_heads(k, H), split_heads(v, H)
        a, probs = attend(q, k, v, use_sdpa, keep_probs)
        return self.finish(x, a), q, k, v, probs

    def pwca(self, z, k2, v2, use_sdpa):
        """PWCA (MODEL.md §2): q, k1, v1 from LN1(z); one softmax over [k1; k2]."""
        H = self.attn.heads
        q, k1, v1 = self.attn.qkv(self.norm1(z)).chunk(3, dim=-1)
        q, k1, v1 = split_heads(q, H), split_heads(k1, H), split_heads(v1, H)
        a, _ = attend(q, torch.cat([k1, k2], dim=2), torch.cat([v1, v2], dim=2), use_sdpa, False)
        return self.finish(z, a)

    def glca(self, local, glob, use_sdpa):
        """GLCA: q = LN1(local)·Wq, k|v = LN1(global)·Wk|Wv, residual `local`."""
        H, D = self.attn.heads, local.shape[-1]
        w, b = self.attn.qkv.weight, self.attn.qkv.bias
        q = F.linear(self.norm1(local), w[:D], b[:D])
        k, v = F.linear(self.norm1(glob), w[D:], b[D:]).chunk(2, dim=-1)
        a, _ = attend(split_heads(q, H), split_heads(k, H), split_heads(v, H), use_sdpa, False)
        return self.finish(local, a)


class DCAL(nn.Module):
    def __init__(self, img, patch, dim, heads, depth, mlp, glca, pwca, top_r, classes, **_):
        super().__init__()
        self.depth, self.M, self.T, self.heads = depth, glca, pwca, heads
        self.N = 1 + (img // patch) ** 2
        self.K = topk_count(top_r, self.N)
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.N, dim))
        self.blocks = nn.ModuleList([Block(dim, heads, mlp) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.head = nn.Linear(dim, classes)
        self.glca = nn.ModuleList([Block(dim, heads, mlp) for _ in range(glca)])
        self.glca_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.glca_head = nn.Linear(dim, classes)
        self.loss_w = nn.Parameter(torch.zeros(3))
        self.use_sdpa = False
        self.ckpt = False
        self._init()

    def _init(self):
        # MODEL.md §1: trunc normal σ 0.02 (±2σ) for matrices, cls_token, pos_embed; biases 0; LN 1/0; loss_w 0.
        for name, p in self.named_parameters():
            with torch.no_grad():
                if p.dim() >= 2 or name in ("cls_token", "pos_embed"):
                    nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04)
                elif "norm" in name and name.endswith("weight"):
                    p.fill_(1.0)
                else:
                    p.zero_()
        for j, g in enumerate(self.glca):   # GLCA starts as a copy of SA block L−M+1 (glca_init)
            g.load_state_dict(self.blocks[self.depth - self.M + j].state_dict())

    def _run(self, fn, *args):
        if not self.ckpt:
            return fn(*args)
        try:
            from torch.utils.checkpoint import checkpoint
            return checkpoint(fn, *args, use_reentrant=False)
        except TypeError:   # an old torch without use_reentrant
            return checkpoint(fn, *args)

    def rollout_select(self, qs, probs):
        """MODEL.md §2: r ← row0(S̄_{L−M}); r ← r·S̄_l, l = L−M−1 … 1; top-K, ties to the lower index."""
        with torch.no_grad():
            L, M = self.depth, self.M
            B, N, dev = qs[0][0].shape[0], self.N, qs[0][0].device
            r = torch.zeros(B, N, dtype=torch.float32, device=dev)
            r[:, 0] = 1.0
            for l in range(L - M - 1, -1, -1):
                S = probs[l]
                if S is None:   # sdpa or checkpointing kept no maps: recompute this layer's
                    q, k = qs[l]
                    s = (q.float() @ k.float().transpose(-2, -1)) * (q.shape[-1] ** -0.5)
                    S = s.softmax(dim=-1).mean(dim=1)
                r = 0.5 * torch.bmm(r.unsqueeze(1), S.float()).squeeze(1) + 0.5 * r
            # stable sort of −r: equal scores keep ascending token order (lower index wins)
            order = torch.sort(-r[:, 1:].cpu(), dim=1, stable=True).indices[:, :self.K] + 1
            sel, _ = torch.sort(order, dim=1)
            sel = torch.cat([torch.zeros(B, 1, dtype=sel.dtype), sel], dim=1)
            return sel.to(dev)

    def forward(self, img, pair, sel=None):
        """Training forward; returns (logits SA, GLCA, PWCA, sel). `sel` given: use it (check mode)."""
        B = img.shape[0]
        x = self.patch_embed.proj(img).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(B, -1, -1).to(x.dtype), x], dim=1) + self.pos_embed
        xs, kvs, qks, probs = [x], [], [], []
        keep = not self.use_sdpa and not self.ckpt
        for blk in self.blocks:
            out, q, k, v, p = self._run(lambda x, blk=blk: blk.sa(x, self.use_sdpa, keep), x)
            xs.append(out)
            kvs.append((k, v))
            qks.append((q, k))
            probs.append(p)
            x = out
        L, M, T = self.depth, self.M, self.T
        computed_sel = self.rollout_select(qks, probs)
        if sel is None:
            sel = computed_sel
        y = None
        for j, g in enumerate(self.glca):
            glob = xs[L - M + j]
            local = glob[torch.arange(B, device=glob.device)[:, None], sel] if j == 0 else y
            y = self._run(lambda a, b, g=g: g.glca(a, b, self.use_sdpa), local, glob)
        z = xs[0]
        for t in range(T):
            k2, v2 = kvs[t][0][pair], kvs[t][1][pair]   # the distractor's SA keys/values, with gradient
            z = self._run(lambda z, k2, v2, blk=self.blocks[t]: blk.pwca(z, k2, v2, self.use_sdpa), z, k2, v2)
        lsa = self.head(self.norm(xs[L][:, 0]))
        lgl = self.glca_head(self.glca_norm(y[:, 0]))
        lpw = self.head(self.norm(z[:, 0]))
        return lsa, lgl, lpw, computed_sel


def dcal_loss(model, logits, labels):
    """MODEL.md §3: ½Σ(e^{−w}·CE + w), CE a mean over the micro-batch, in fp32."""
    ces = [F.cross_entropy(lg.float(), labels) for lg in logits]
    w = model.loss_w.float()
    loss = 0.5 * sum(torch.exp(-w[h]) * ces[h] + w[h] for h in range(3))
    return loss, ces


def adamw(model, lr, fused=False):
    """MODEL.md §4: decay 0.05 on matrices only (not biases, LN, pos_embed, cls_token, loss_w).
    fused: one fused CUDA kernel per step (torch >= 2.0 on CUDA), as issue 14's peer rows use."""
    decay, keep = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and name not in ("cls_token", "pos_embed") else keep).append(p)
    groups = [{"params": decay, "weight_decay": 0.05}, {"params": keep, "weight_decay": 0.0}]
    kw = dict(lr=lr, betas=(0.9, 0.999), eps=1e-8)
    if fused:
        return torch.optim.AdamW(groups, fused=True, **kw)
    return torch.optim.AdamW(groups, **kw)


def adamw_kind(device):
    """'fused' where this torch's AdamW takes fused=True on this device, else 'plain'."""
    if device != "cuda" or "fused" not in inspect.signature(torch.optim.AdamW.__init__).parameters:
        return "plain"
    try:
        torch.optim.AdamW([torch.zeros(1, device=device, requires_grad=True)], fused=True)
        return "fused"
    except (RuntimeError, TypeError, ValueError):
        return "plain"


def compiled(model):
    """torch.compile of the model's forward (and so, through AOTAutograd, of its backward).
    The rollout's top-K selection leaves the graph (a .cpu() sort): dynamo splits there."""
    if not hasattr(torch, "compile"):
        sys.exit(f"peer: --compile: torch {torch.__version__} has no torch.compile (torch >= 2.0; "
                 "Debian's python3-torch is 1.13)")
    return torch.compile(model)


def derangement(B, gen):
    """A uniform random derangement: shuffle until no fixed point (as dcal's pwca_pairing)."""
    while True:
        p = torch.randperm(B, generator=gen)
        if not bool((p == torch.arange(B)).any()):
            return p


# ---------------------------------------------------------------- benchmark

def peak_mib(device):
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # KiB on Linux


def bench(args):
    cfg = dict(PRESETS[args.preset])
    cfg["img"] = args.img if args.img else cfg.get("img", 224)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    model = DCAL(**cfg).to(dev)
    model.use_sdpa = args.attn == "sdpa" and HAVE_SDPA
    model.ckpt = args.checkpoint_blocks
    attn = "sdpa" if model.use_sdpa else "naive"
    if args.attn == "sdpa" and not HAVE_SDPA:
        print(f"peer: torch {torch.__version__} has no F.scaled_dot_product_attention: --attn sdpa falls back to naive",
              file=sys.stderr)
    kind = adamw_kind(args.device)
    opt = adamw(model, cfg["lr"], fused=kind == "fused")
    step_model = compiled(model) if args.compile else model
    gen = torch.Generator().manual_seed(1)
    B = args.batch
    if B < 2:
        sys.exit("peer: --batch must be at least 2 (PWCA pairs images within the micro-batch)")
    img = torch.randn(B, 3, cfg["img"], cfg["img"], generator=gen).to(dev)
    labels = torch.randint(0, cfg["classes"], (B,), generator=gen).to(dev)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    times = []
    for i in range(args.warmup + args.steps):
        pair = derangement(B, gen).to(dev)
        sync()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if args.precision == "bf16":
            with torch.autocast(args.device, dtype=torch.bfloat16):
                lsa, lgl, lpw, _ = step_model(img, pair)
        else:
            lsa, lgl, lpw, _ = step_model(img, pair)
        loss, _ = dcal_loss(model, (lsa, lgl, lpw), labels)
        loss.backward()
        opt.step()
        sync()
        dt = time.perf_counter() - t0
        if not math.isfinite(loss.item()):
            sys.exit(f"peer: step {i + 1}: loss is {loss.item()}")
        if i >= args.warmup:
            times.append(dt)
        print(f"peer: step {i + 1}{' (warm-up)' if i < args.warmup else ''}: {dt * 1e3:.0f} ms, loss {loss.item():.4f}",
              file=sys.stderr)
    best, med = min(times), statistics.median(times)
    print(f"peer: device={args.device} precision={args.precision} attn={attn} img={cfg['img']} batch={B} "
          f"step_ms={best * 1e3:.1f} median_ms={med * 1e3:.1f} img_s={B / best:.3f} peak_mib={peak_mib(args.device):.0f} "
          f"torch={torch.__version__} threads={torch.get_num_threads()} preset={args.preset}"
          f"{' ckpt=1' if args.checkpoint_blocks else ''}{' compile=1' if args.compile else ''} adamw={kind}")


# ---------------------------------------------------------------- check

DTYPES = {"F32": (torch.float32, 4), "I32": (torch.int32, 4), "F64": (torch.float64, 8), "I64": (torch.int64, 8)}


def read_safetensors(path):
    """safetensors with the standard library: u64 LE header length, JSON header, raw LE data."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        sys.exit(f"peer: {path}: not a safetensors file (shorter than 8 bytes)")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        sys.exit(f"peer: {path}: header length {n} runs past the end of the file ({len(raw)} bytes)")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    body, out = raw[8 + n:], {}
    for name, h in header.items():
        if h["dtype"] not in DTYPES:
            sys.exit(f"peer: {path}: tensor '{name}': dtype {h['dtype']} not supported here")
        dt, size = DTYPES[h["dtype"]]
        a, b = h["data_offsets"]
        count = (b - a) // size
        if count != math.prod(h["shape"]) or b > len(body):
            sys.exit(f"peer: {path}: tensor '{name}': data_offsets [{a},{b}] do not fit shape {h['shape']}")
        buf = bytearray(body[a:b])   # a writable copy: frombuffer warns on read-only memory
        t = torch.frombuffer(buf, dtype=dt) if count else torch.empty(0, dtype=dt)
        out[name] = t.reshape(h["shape"]).clone()
    return out, meta


def rel_err(a, b):
    # Normwise: max|a−b| / max|b| per tensor, so tiny elements do not dominate.
    a, b = a.double(), b.double()
    den = b.abs().max().item()
    return (a - b).abs().max().item() / (den if den > 0 else 1.0)


def grad_group(name):
    if name.startswith("blocks."):
        return "grad.blocks"
    if name.startswith("glca."):
        return "grad.glca"
    if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
        return "grad.embed"
    if name == "loss_w":
        return "grad.loss_w"
    return "grad.heads"


def check(args):
    ts, meta = read_safetensors(args.check)
    cfg = dict(PRESETS[args.preset or "tiny"])
    img, labels, pair = ts["input"], ts["labels"].long(), ts["pair"].long()
    accum, micro = pair.shape
    cfg["img"] = img.shape[-1]
    cfg["dim"] = ts["cls_token"].shape[-1]
    cfg["patch"] = ts["patch_embed.proj.weight"].shape[-1]
    cfg["depth"] = len({k.split(".")[1] for k in ts if re.match(r"blocks\.\d+\.", k)})
    cfg["glca"] = len({k.split(".")[1] for k in ts if re.match(r"glca\.\d+\.", k)})
    cfg["mlp"] = ts["blocks.0.mlp.fc1.weight"].shape[0]
    cfg["classes"] = ts["head.weight"].shape[0]
    torch.manual_seed(0)
    model = DCAL(**cfg)
    model.K = ts["sel"].shape[1] - 1
    model.ckpt = args.checkpoint_blocks   # the checkpointed and sdpa paths must give the same step too
    model.use_sdpa = args.attn == "sdpa" and HAVE_SDPA
    names = dict(model.named_parameters())
    missing = [n for n in names if n not in ts or "grad." + n not in ts]
    if missing:
        sys.exit(f"peer: {args.check}: tensors missing for the model: {', '.join(missing[:5])}")
    with torch.no_grad():
        for n, p in names.items():
            if tuple(ts[n].shape) != tuple(p.shape):
                sys.exit(f"peer: {args.check}: tensor '{n}': shape {list(ts[n].shape)}, model expects {list(p.shape)} "
                         f"(heads/pwca come from --preset {args.preset or 'tiny'})")
            p.copy_(ts[n])
    print(f"peer: check {args.check}: N={model.N} K={model.K} D={cfg['dim']} H={cfg['heads']} L={cfg['depth']} "
          f"M={cfg['glca']} T={cfg['pwca']} accum={accum} micro={micro} seed={meta.get('seed', '?')}")
    errs, sel_bad = {}, 0
    for k in range(accum):
        rows = slice(k * micro, (k + 1) * micro)
        lsa, lgl, lpw, sel = model(img[rows], pair[k])   # its own rollout and selection
        sel_bad += int((sel != ts["sel"][rows].long()).any(dim=1).sum())
        loss, ces = dcal_loss(model, (lsa, lgl, lpw), labels[rows])
        (loss / accum).backward()
        for g, lg in zip(("logits.sa", "logits.glca", "logits.pwca"), (lsa, lgl, lpw)):
            errs[g] = max(errs.get(g, 0.0), rel_err(lg.detach(), ts[g][rows]))
        errs["ce"] = max(errs.get("ce", 0.0), rel_err(torch.stack([c.detach() for c in ces]), ts["ce"][k]))
        errs["loss"] = max(errs.get("loss", 0.0), rel_err(loss.detach().reshape(1), ts["loss"][k:k + 1]))
    for n, p in names.items():
        g = grad_group(n)
        errs[g] = max(errs.get(g, 0.0), rel_err(p.grad, ts["grad." + n]))
    ok = sel_bad == 0
    print(f"peer: sel: {sel_bad} of {accum * micro} rows differ")
    for g in sorted(errs):
        lim = 1e-3 if g.startswith("grad.") else 1e-4
        ok &= errs[g] <= lim
        print(f"peer: {g:12s} max rel err {errs[g]:.2e} (limit {lim:.0e}){'' if errs[g] <= lim else '  FAIL'}")
    print("peer: check " + ("passed: the same step as dcal" if ok else "FAILED"))
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--attn", choices=["naive", "sdpa"], default="naive")
    ap.add_argument("--img", type=int, choices=[224, 448], default=None, help="vit_b16: 224 (default) or 448")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--preset", choices=sorted(PRESETS), default=None, help="vit_b16 (bench default) or tiny")
    ap.add_argument("--checkpoint-blocks", action="store_true", help="torch.utils.checkpoint around every block")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (forward and backward; torch >= 2.0)")
    ap.add_argument("--check", metavar="DUMP", help="compare one step with a `dcal train --dump-step` file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.check:
        torch.set_num_threads(args.threads or torch.get_num_threads())
        sys.exit(check(args))
    args.preset = args.preset or "vit_b16"
    if args.preset == "tiny" and args.img:
        sys.exit("peer: --img is for vit_b16; the tiny preset is 32 px")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("peer: --device cuda: torch sees no CUDA device")
    bench(args)


if __name__ == "__main__":
    main()
