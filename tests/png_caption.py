#!/usr/bin/env python3
"""png_caption.py PNG...: for each overlay PNG `dcal explain` / `dcal train` writes,
print "WIDTH HEIGHT LINES": LINES counts the text lines in the caption strip
below the square image (bands of rows holding dark pixels). A plain PNG
decoder (8-bit RGB, no interlace), so the tests need no imaging package."""
import struct, sys, zlib

def decode(path):
    b = open(path, "rb").read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n", path + ": not a PNG"
    pos, idat, w = 8, b"", 0
    while pos < len(b):
        n, kind = struct.unpack(">I4s", b[pos:pos + 8])
        body = b[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, colour, _, _, lace = struct.unpack(">IIBBBBB", body)
            assert (depth, colour, lace) == (8, 2, 0), (path, depth, colour, lace)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride, rows, prev = zlib.decompress(idat), 3 * w, [], bytearray(3 * w)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - 3] if x >= 3 else 0
            c = prev[x - 3] if x >= 3 else 0
            p = a + prev[x] - c
            pred = {0: 0, 1: a, 2: prev[x], 3: (a + prev[x]) // 2,
                    4: a if abs(p - a) <= abs(p - prev[x]) and abs(p - a) <= abs(p - c) else prev[x] if abs(p - prev[x]) <= abs(p - c) else c}[f]
            line[x] = (line[x] + pred) & 255
        rows.append(line)
        prev = line
    return w, h, rows

for path in sys.argv[1:]:
    w, h, rows = decode(path)
    lines, inside = 0, False
    for y in range(w, h):   # the image is w x w; the caption strip is below it
        dark = any(rows[y][x] < 64 and rows[y][x + 1] < 64 and rows[y][x + 2] < 64 for x in range(0, 3 * w, 3))
        lines += dark and not inside
        inside = dark
    print(w, h, lines)
