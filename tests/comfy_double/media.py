"""Small, real media files written without Pillow or ffmpeg.

The double has to hand out files that a client can open (PNG, animated PNG,
GIF, WAV, FLAC), but the image it runs in has neither Pillow nor ffmpeg, so
the encoders here are the simplest valid forms of each format.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass


@dataclass
class Image:
    """One RGB picture: `pixels` holds width*height*3 bytes, row by row."""

    width: int
    height: int
    pixels: bytes

    @classmethod
    def filled(cls, width: int, height: int, rgb: int) -> Image:
        colour = bytes(((rgb >> 16) & 0xFF, (rgb >> 8) & 0xFF, rgb & 0xFF))
        return cls(width, height, colour * (width * height))

    def inverted(self) -> Image:
        return Image(self.width, self.height, self.pixels.translate(_INVERT))

    def rows(self):
        stride = self.width * 3
        for y in range(self.height):
            yield self.pixels[y * stride : (y + 1) * stride]


_INVERT = bytes(255 - i for i in range(256))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class MediaError(ValueError):
    """A file the double cannot read (the real server would fail the same way)."""


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def _png_header(image: Image) -> bytes:
    return PNG_SIGNATURE + _chunk(
        b"IHDR", struct.pack(">IIBBBBB", image.width, image.height, 8, 2, 0, 0, 0)
    )


def _png_pixels(image: Image) -> bytes:
    return zlib.compress(b"".join(b"\x00" + row for row in image.rows()), 6)


def png(image: Image, text: dict[str, str] | None = None) -> bytes:
    """A PNG of `image`, with tEXt chunks like ComfyUI's prompt/workflow metadata."""
    chunks = [_png_header(image)]
    for key, value in (text or {}).items():
        chunks.append(
            _chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1", "replace"))
        )
    chunks.append(_chunk(b"IDAT", _png_pixels(image)))
    chunks.append(_chunk(b"IEND", b""))
    return b"".join(chunks)


def apng(frames: list[Image], fps: float, loop: int = 0) -> bytes:
    """An animated PNG (what ComfyUI's SaveAnimatedPNG writes)."""
    first = frames[0]
    delay_num, delay_den = 1000, max(1, round(fps * 1000))
    out = [_png_header(first), _chunk(b"acTL", struct.pack(">II", len(frames), loop))]
    seq = 0
    for index, frame in enumerate(frames):
        fctl = struct.pack(
            ">IIIIIHHBB", seq, first.width, first.height, 0, 0, delay_num, delay_den, 0, 0
        )
        out.append(_chunk(b"fcTL", fctl))
        seq += 1
        data = _png_pixels(Image(first.width, first.height, frame.pixels))
        if index == 0:
            out.append(_chunk(b"IDAT", data))
        else:
            out.append(_chunk(b"fdAT", struct.pack(">I", seq) + data))
            seq += 1
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


def _unfilter(raw: bytes, width: int, height: int, bpp: int) -> bytes:
    stride = width * bpp
    out = bytearray()
    prev = bytearray(stride)
    pos = 0
    for _ in range(height):
        kind = raw[pos]
        line = bytearray(raw[pos + 1 : pos + 1 + stride])
        pos += 1 + stride
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        out += line
        prev = line
    return bytes(out)


def read_png(data: bytes) -> Image:
    """Decode an 8-bit, non-interlaced PNG (gray, RGB, gray+alpha or RGBA) to RGB."""
    if not data.startswith(PNG_SIGNATURE):
        raise MediaError("cannot identify image file")
    pos, idat, header = 8, [], None
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None or not idat:
        raise MediaError("cannot identify image file")
    width, height, depth, colour, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
    if depth != 8 or channels is None or interlace:
        raise MediaError(
            f"unsupported PNG (depth {depth}, colour type {colour}, interlace {interlace})"
        )
    raw = _unfilter(zlib.decompress(b"".join(idat)), width, height, channels)
    if channels == 3:
        pixels = raw
    elif channels == 4:
        pixels = b"".join(raw[i : i + 3] for i in range(0, len(raw), 4))
    else:
        pixels = b"".join(bytes((raw[i],)) * 3 for i in range(0, len(raw), channels))
    return Image(width, height, pixels)


def _gif_palette_index(image: Image) -> tuple[bytes, bytes]:
    """A 256-colour palette (3-3-2 bits) and each pixel's index in it."""
    palette = b"".join(
        bytes(((i >> 5) * 255 // 7, ((i >> 2) & 7) * 255 // 7, (i & 3) * 85)) for i in range(256)
    )
    px = image.pixels
    indices = bytes(
        ((px[i] >> 5) << 5) | ((px[i + 1] >> 5) << 2) | (px[i + 2] >> 6)
        for i in range(0, len(px), 3)
    )
    return palette, indices


def _lzw_uncompressed(indices: bytes) -> bytes:
    """GIF LZW that never grows its table: a clear code every 254 symbols keeps codes 9 bits."""
    clear, end = 256, 257
    codes = []
    for start in range(0, len(indices), 254):
        codes.append(clear)
        codes.extend(indices[start : start + 254])
    codes.append(end)
    acc = bits = 0
    out = bytearray()
    for code in codes:
        acc |= code << bits
        bits += 9
        while bits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            bits -= 8
    if bits:
        out.append(acc & 0xFF)
    blocks = bytearray()
    for start in range(0, len(out), 255):
        piece = out[start : start + 255]
        blocks += bytes((len(piece),)) + piece
    return bytes(blocks) + b"\x00"


def gif(frames: list[Image], fps: float, loop: int = 0) -> bytes:
    """An animated GIF (what VideoHelperSuite writes for format image/gif)."""
    first = frames[0]
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", first.width, first.height, 0, 0, 0))
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", loop) + b"\x00"
    delay = max(2, round(100 / max(fps, 0.01)))
    for frame in frames:
        palette, indices = _gif_palette_index(Image(first.width, first.height, frame.pixels))
        out += b"\x21\xf9\x04\x00" + struct.pack("<H", delay) + b"\x00\x00"
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, first.width, first.height, 0x87) + palette
        out += b"\x08" + _lzw_uncompressed(indices)
    out += b"\x3b"
    return bytes(out)


def wav(samples: list[float], sample_rate: int) -> bytes:
    """16-bit mono PCM WAV."""
    pcm = b"".join(struct.pack("<h", max(-32768, min(32767, round(s * 32767)))) for s in samples)
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + len(pcm))
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", len(pcm))
        + pcm
    )


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def _utf8_number(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n < 0x800:
        return bytes((0xC0 | (n >> 6), 0x80 | (n & 0x3F)))
    if n < 0x10000:
        return bytes((0xE0 | (n >> 12), 0x80 | ((n >> 6) & 0x3F), 0x80 | (n & 0x3F)))
    raise ValueError("too many FLAC frames for the double")


def flac(samples: list[float], sample_rate: int, block: int = 4096) -> bytes:
    """16-bit mono FLAC with verbatim (uncompressed) subframes: valid, if not small."""
    pcm = [max(-32768, min(32767, round(s * 32767))) for s in samples]
    info = struct.pack(">HH", block, block) + b"\x00" * 6
    info += ((sample_rate << 44) | (0 << 41) | (15 << 36) | len(pcm)).to_bytes(
        8, "big"
    ) + b"\x00" * 16
    out = bytearray(b"fLaC" + bytes((0x80,)) + len(info).to_bytes(3, "big") + info)
    for number, start in enumerate(range(0, len(pcm), block)):
        chunk = pcm[start : start + block]
        header = bytearray(b"\xff\xf8" + bytes((0x70, 0x08)) + _utf8_number(number))
        header += struct.pack(">H", len(chunk) - 1)
        header.append(_crc8(bytes(header)))
        frame = header + b"\x02" + struct.pack(f">{len(chunk)}h", *chunk)
        out += frame + struct.pack(">H", _crc16(bytes(frame)))
    return bytes(out)


def animation(frames: list[Image], fps: float, ext: str, loop: int = 0) -> bytes:
    if ext == "gif":
        return gif(frames, fps, loop)
    if ext == "png":
        return apng(frames, fps, loop)
    raise MediaError(f"the double cannot write {ext} animations")


def video(frames: list[Image], fps: float, format: str) -> bytes:
    raise MediaError(f"the double cannot write {format} yet")
