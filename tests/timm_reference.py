"""The timm side of tests/e2e_timm.sh.

make DIR [MODEL]: a randomly initialised timm MODEL (default vit_base_patch16_224; 1000 classes; every
parameter perturbed so that no bias is 0 and no LayerNorm is the identity),
saved as DIR/vit.pth (a torch.save state dict, as timm checkpoints are) and as
DIR/vit.npz in the original ViT release's Flax layout; that .npz is checked to
load back into timm (timm's own _load_weights) with the same logits. Writes
DIR/images.safetensors (tensor 'images' [3,3,224,224], random) and timm's
logits for them, DIR/timm_logits.json.

compare DIR OUT.jsonl: dcal's `predict --logits` lines against timm's logits;
exit 1 if any differs by more than 1e-4.
"""
import json
import struct
import sys

import numpy as np
import torch
import timm
from timm.models.vision_transformer import _load_weights


def randomised_vit(name):
    torch.manual_seed(0)
    m = timm.create_model(name, pretrained=False, num_classes=1000)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("weight") and p.ndim == 1:   # LayerNorm scale
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.add_(0.02 * torch.randn_like(p))
    return m.eval()


def flax_arrays(sd, depth, D, H):
    """timm state dict → the original ViT .npz names and layouts (inverse of timm's _load_weights)."""
    a = lambda t: t.detach().numpy().astype(np.float32)
    hd = D // H
    out = {"cls": a(sd["cls_token"]),
           "embedding/kernel": a(sd["patch_embed.proj.weight"]).transpose(2, 3, 1, 0),
           "embedding/bias": a(sd["patch_embed.proj.bias"]),
           "Transformer/posembed_input/pos_embedding": a(sd["pos_embed"]),
           "Transformer/encoder_norm/scale": a(sd["norm.weight"]),
           "Transformer/encoder_norm/bias": a(sd["norm.bias"]),
           "head/kernel": a(sd["head.weight"]).T, "head/bias": a(sd["head.bias"])}
    for i in range(depth):
        p, b = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        out[p + "LayerNorm_0/scale"], out[p + "LayerNorm_0/bias"] = a(sd[b + "norm1.weight"]), a(sd[b + "norm1.bias"])
        out[p + "LayerNorm_2/scale"], out[p + "LayerNorm_2/bias"] = a(sd[b + "norm2.weight"]), a(sd[b + "norm2.bias"])
        qkv_w, qkv_b = a(sd[b + "attn.qkv.weight"]), a(sd[b + "attn.qkv.bias"])
        att = p + "MultiHeadDotProductAttention_1/"
        for k, n in enumerate(("query", "key", "value")):
            out[att + n + "/kernel"] = qkv_w[k * D:(k + 1) * D].T.reshape(D, H, hd)
            out[att + n + "/bias"] = qkv_b[k * D:(k + 1) * D].reshape(H, hd)
        out[att + "out/kernel"] = a(sd[b + "attn.proj.weight"]).T.reshape(H, hd, D)
        out[att + "out/bias"] = a(sd[b + "attn.proj.bias"])
        for j, n in enumerate(("fc1", "fc2")):
            out[p + f"MlpBlock_3/Dense_{j}/kernel"] = a(sd[b + f"mlp.{n}.weight"]).T
            out[p + f"MlpBlock_3/Dense_{j}/bias"] = a(sd[b + f"mlp.{n}.bias"])
    return out


def write_images(path, x):
    data = x.numpy().astype("<f4").tobytes()
    head = json.dumps({"images": {"dtype": "F32", "shape": list(x.shape), "data_offsets": [0, len(data)]}}).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + data)


def make(d, name):
    m = randomised_vit(name)
    torch.save(m.state_dict(), f"{d}/vit.pth")
    np.savez(f"{d}/vit.npz", **flax_arrays(m.state_dict(), len(m.blocks), m.embed_dim, m.blocks[0].attn.num_heads))
    torch.manual_seed(1)
    x = torch.randn(3, 3, 224, 224)
    write_images(f"{d}/images.safetensors", x)
    with torch.no_grad():
        logits = m(x)
        m2 = timm.create_model(name, pretrained=False, num_classes=1000).eval()
        _load_weights(m2, f"{d}/vit.npz")
        npz_diff = (m2(x) - logits).abs().max().item()
    if npz_diff > 1e-5:
        sys.exit(f"timm_reference: the .npz written does not load back into timm (max diff {npz_diff})")
    json.dump(logits.tolist(), open(f"{d}/timm_logits.json", "w"))
    print(f"timm {timm.__version__}, torch {torch.__version__}, {name}: logits {tuple(logits.shape)}, "
          f"range [{logits.min().item():.3f}, {logits.max().item():.3f}]")


def compare(d, out):
    want = np.array(json.load(open(f"{d}/timm_logits.json")))
    got = np.array([json.loads(line)["logits_sa"] for line in open(out)])
    if got.shape != want.shape:
        sys.exit(f"timm_reference: dcal printed logits of shape {got.shape}, timm {want.shape}")
    diff = np.abs(got - want).max()
    print(f"{out}: max |dcal - timm| = {diff:.3g} over {want.size} logits (tolerance 1e-4); "
          f"top-1 agree {int((got.argmax(1) == want.argmax(1)).sum())}/{len(want)}")
    sys.exit(0 if diff <= 1e-4 else 1)


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "vit_base_patch16_224")
    else:
        compare(sys.argv[2], sys.argv[3])
