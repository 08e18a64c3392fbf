#!/usr/bin/env python3
"""Prints "WIDTH HEIGHT COLOURS INK" for the top ROWS rows of a PNG (8-bit RGB or RGBA, not
interlaced, as Chromium writes screenshots): COLOURS is the number of distinct pixel colours, INK
the fraction of pixels that are not the top-left (background) colour. Standard library only
(zlib); only as many rows as asked are decoded, so a tall screenshot stays quick.

usage: png_stats.py FILE [ROWS]"""
import struct
import sys
import zlib


def main():
    path = sys.argv[1]
    want_rows = int(sys.argv[2]) if len(sys.argv) > 2 else 400
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"{path}: not a PNG file")
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace:
        sys.exit(f"{path}: depth {depth}, colour type {colour}, interlace {interlace}: "
                 "only 8-bit RGB/RGBA without interlacing is read")
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    rows = min(want_rows, height)
    raw = zlib.decompressobj().decompress(b"".join(idat), rows * (stride + 1))
    previous = bytearray(stride)
    colours, ink, background = set(), 0, None
    for r in range(rows):
        line = raw[r * (stride + 1):(r + 1) * (stride + 1)]
        kind, cur = line[0], bytearray(line[1:])
        # PNG filters: 0 none, 1 sub, 2 up, 3 average, 4 Paeth (each byte from its left, upper
        # and upper-left neighbours of the same channel).
        if kind == 1:
            for i in range(bpp, stride):
                cur[i] = (cur[i] + cur[i - bpp]) & 255
        elif kind == 2:
            for i in range(stride):
                cur[i] = (cur[i] + previous[i]) & 255
        elif kind == 3:
            for i in range(stride):
                left = cur[i - bpp] if i >= bpp else 0
                cur[i] = (cur[i] + ((left + previous[i]) >> 1)) & 255
        elif kind == 4:
            for i in range(stride):
                a = cur[i - bpp] if i >= bpp else 0
                b = previous[i]
                c = previous[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                cur[i] = (cur[i] + pred) & 255
        for i in range(0, stride, bpp):
            pixel = bytes(cur[i:i + bpp])
            if background is None:
                background = pixel
            colours.add(pixel)
            ink += pixel != background
        previous = cur
    print(width, height, len(colours), f"{ink / (rows * width):.4f}")


if __name__ == "__main__":
    main()
