"""A tiny PNG reader (8-bit RGB/RGBA, non-interlaced: what Chromium writes) for checking
screenshots without Pillow: zlib, numpy and the five scanline filters of PNG (RFC 2083 §6)."""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read(path) -> np.ndarray:
    """The pixels as a uint8 array of shape (height, width, channels)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != SIGNATURE:
        raise ValueError(f"{path}: not a PNG")
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError(f"{path}: only 8-bit RGB/RGBA non-interlaced PNGs are supported")
    bpp = 3 if colour == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(height, width * bpp + 1)
    out = np.zeros((height, width * bpp), np.uint8)
    prev = np.zeros(width * bpp, np.uint8)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:]
        if kind == 0:
            cur = line.copy()
        elif kind == 1:  # Sub: a running sum per channel
            cur = (line.reshape(width, bpp).astype(np.uint32).cumsum(axis=0) % 256).astype(np.uint8).ravel()
        elif kind == 2:  # Up
            cur = line + prev
        else:  # Average and Paeth depend on the byte just decoded: one at a time
            cur = bytearray(line.tobytes())
            up = prev.tobytes()
            for i in range(width * bpp):
                a = cur[i - bpp] if i >= bpp else 0
                b = up[i]
                if kind == 3:
                    cur[i] = (cur[i] + (a + b) // 2) & 255
                else:
                    c = up[i - bpp] if i >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            cur = np.frombuffer(bytes(cur), np.uint8)
        out[y] = cur
        prev = out[y]
    return out.reshape(height, width, bpp)


def non_white(pixels: np.ndarray, threshold: int = 245) -> int:
    """Pixels darker than `threshold` in any colour channel."""
    return int((pixels[..., :3].min(axis=2) < threshold).sum())


def colours(pixels: np.ndarray) -> set[tuple[int, int, int]]:
    rgb = pixels[..., :3].reshape(-1, 3).astype(np.uint32)
    packed = np.unique(rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2])
    return {(int(v) >> 16, int(v) >> 8 & 255, int(v) & 255) for v in packed}


def write(path, pixels: np.ndarray) -> None:
    """Write pixels back as a PNG (to crop a screenshot for a person to look at)."""
    height, width, bpp = pixels.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels.reshape(height, width * bpp))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    with open(path, "wb") as f:
        f.write(SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2 if bpp == 3 else 6, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
