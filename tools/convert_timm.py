#!/usr/bin/python3
"""Dump a timm ViT checkpoint (.pth / .bin, a pickled PyTorch state dict) to a
plain safetensors file with timm's names, for `dcal convert`:

    /usr/bin/python3 tools/convert_timm.py vit_base_patch16_224.pth vit_timm.safetensors
    dcal convert vit_timm.safetensors --out vit_b16.safetensors

Needs only torch (Debian: python3-torch, importable by /usr/bin/python3); the
safetensors file is written here by hand (8-byte header length, JSON header,
raw little-endian F32 data), so the safetensors package is not needed. Names
are left as timm has them; `dcal convert` checks and maps them (docs/MODEL.md §6).
"""
import json
import struct
import sys


def state_dict_of(obj):
    """The tensor dict inside what torch.load returned (timm train checkpoints nest it)."""
    import torch
    for key in ("state_dict_ema", "model_ema", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        sys.exit("convert_timm: no state dict of tensors found (expected a timm ViT checkpoint)")
    out = {}
    for name, t in obj.items():
        if not isinstance(t, torch.Tensor):
            continue
        for prefix in ("module.", "model."):   # DataParallel / wrapper prefixes
            if name.startswith(prefix):
                name = name[len(prefix):]
        out[name] = t
    return out


def write_safetensors(path, tensors, meta):
    header, blobs, offset = {"__metadata__": meta}, [], 0
    for name in sorted(tensors):
        data = tensors[name].detach().to("cpu").float().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)   # the format aligns the data section to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)


def main():
    if len(sys.argv) != 3 or sys.argv[1] in ("-h", "--help"):
        sys.exit(__doc__)
    try:
        import torch
    except ImportError:
        sys.exit("convert_timm: torch is not importable (Debian: apt-get install python3-torch; run /usr/bin/python3)")
    src, dst = sys.argv[1], sys.argv[2]
    obj = torch.load(src, map_location="cpu")
    sd = state_dict_of(obj)
    write_safetensors(dst, sd, {"source": src.rsplit("/", 1)[-1], "written_by": "tools/convert_timm.py"})
    print(f"wrote {dst}: {len(sd)} tensors with timm names; next: dcal convert {dst} --out OUT.safetensors")


if __name__ == "__main__":
    main()
