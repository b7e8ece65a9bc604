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

    def __repr__(self) -> str:
        # Short, like a tensor's repr in ComfyUI's error frames, not a dump of the pixels.
        return f"Image({self.width}x{self.height} RGB)"

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


class _Bits:
    """An H.264 RBSP bit writer (u(n), ue(v), se(v))."""

    def __init__(self):
        self.value = 0
        self.count = 0
        self.out = bytearray()

    def u(self, n: int, value: int) -> None:
        for shift in range(n - 1, -1, -1):
            self.value = (self.value << 1) | ((value >> shift) & 1)
            self.count += 1
            if self.count == 8:
                self.out.append(self.value)
                self.value = self.count = 0

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(code.bit_length() * 2 - 1, code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def align_zero(self) -> None:
        while self.count:
            self.u(1, 0)

    def raw(self, data: bytes) -> None:
        assert self.count == 0
        self.out += data

    def trailing(self) -> bytes:
        self.u(1, 1)
        self.align_zero()
        return bytes(self.out)


def _nal(kind: int, rbsp: bytes) -> bytes:
    """A NAL unit (nal_ref_idc 3) with emulation prevention bytes."""
    out = bytearray((0x60 | kind,))
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _h264_parameter_sets(width: int, height: int, level: int) -> tuple[bytes, bytes]:
    mbs_w, mbs_h = (width + 15) // 16, (height + 15) // 16
    sps = _Bits()
    sps.u(8, 66)  # Baseline profile
    sps.u(8, 0xC0)  # constraint_set0 and 1
    sps.u(8, level)
    for value in (0, 0, 2, 1):  # sps id, log2_max_frame_num-4, poc type 2, max refs
        sps.ue(value)
    sps.u(1, 0)
    sps.ue(mbs_w - 1)
    sps.ue(mbs_h - 1)
    sps.u(1, 1)  # frame_mbs_only
    sps.u(1, 1)  # direct_8x8_inference
    crop_right, crop_bottom = (mbs_w * 16 - width) // 2, (mbs_h * 16 - height) // 2
    sps.u(1, 1 if crop_right or crop_bottom else 0)
    if crop_right or crop_bottom:
        for value in (0, crop_right, 0, crop_bottom):
            sps.ue(value)
    sps.u(1, 0)  # no VUI
    pps = _Bits()
    for value in (0, 0):
        pps.ue(value)
    pps.u(1, 0)  # CAVLC
    pps.u(1, 0)
    pps.ue(0)
    pps.ue(0)
    pps.ue(0)
    pps.u(1, 0)
    pps.u(2, 0)
    for value in (0, 0, 0):
        pps.se(value)
    pps.u(1, 1)  # deblocking control present
    pps.u(1, 0)
    pps.u(1, 0)
    return _nal(7, sps.trailing()), _nal(8, pps.trailing())


def _ycbcr_planes(image: Image, mbs_w: int, mbs_h: int) -> tuple[list[bytes], bytes, bytes]:
    """BT.601 limited-range Y, Cb, Cr planes, padded to whole macroblocks."""
    w, h = mbs_w * 16, mbs_h * 16
    px = image.pixels
    ys, cbs, crs = [], bytearray(), bytearray()
    for y in range(h):
        sy = min(y, image.height - 1)
        row = bytearray()
        for x in range(w):
            i = (sy * image.width + min(x, image.width - 1)) * 3
            r, g, b = px[i], px[i + 1], px[i + 2]
            row.append(16 + (16829 * r + 33039 * g + 6416 * b) // 65536)
            if y % 2 == 0 and x % 2 == 0:
                cbs.append(128 + (-9714 * r - 19070 * g + 28784 * b) // 65536)
                crs.append(128 + (28784 * r - 24103 * g - 4681 * b) // 65536)
        ys.append(bytes(row))
    return ys, bytes(cbs), bytes(crs)


def _h264_idr(image: Image, mbs_w: int, mbs_h: int, idr_id: int) -> bytes:
    """One IDR picture of I_PCM macroblocks: raw samples, no compression, always decodable."""
    ys, cb, cr = _ycbcr_planes(image, mbs_w, mbs_h)
    cw = mbs_w * 8
    bits = _Bits()
    bits.ue(0)  # first_mb_in_slice
    bits.ue(7)  # I slice, all slices
    bits.ue(0)  # pps id
    bits.u(4, 0)  # frame_num
    bits.ue(idr_id)
    bits.u(1, 0)  # no_output_of_prior_pics
    bits.u(1, 0)  # long_term_reference
    bits.se(0)  # slice_qp_delta
    bits.ue(1)  # deblocking off
    for my in range(mbs_h):
        for mx in range(mbs_w):
            bits.ue(25)  # mb_type I_PCM
            bits.align_zero()
            bits.raw(b"".join(ys[my * 16 + r][mx * 16 : mx * 16 + 16] for r in range(16)))
            for plane in (cb, cr):
                bits.raw(b"".join(plane[(my * 8 + r) * cw + mx * 8 :][:8] for r in range(8)))
    return _nal(5, bits.trailing())


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def mp4(frames: list[Image], fps: float) -> bytes:
    """An H.264 (Baseline, I_PCM) MP4: large for its size, but a real, playable video."""
    width, height = frames[0].width & ~1 or 2, frames[0].height & ~1 or 2
    mbs_w, mbs_h = (width + 15) // 16, (height + 15) // 16
    level = 30 if mbs_w * mbs_h <= 1620 else 51
    sps, pps = _h264_parameter_sets(width, height, level)
    samples = []
    for index, frame in enumerate(frames):
        nal = _h264_idr(frame, mbs_w, mbs_h, index % 2)
        samples.append(struct.pack(">I", len(nal)) + nal)
    timescale, delta = 1000, max(1, round(1000 / max(fps, 0.001)))
    duration = delta * len(frames)
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 512), b"isomiso2avc1mp41")
    free = _box(b"free")  # as ComfyUI's PyAV (libavformat's mov muxer) writes one
    mdat = _box(b"mdat", *samples)
    avcc = _box(
        b"avcC",
        bytes((1, 66, 0xC0, level, 0xFF, 0xE1)),
        struct.pack(">H", len(sps)), sps, bytes((1,)), struct.pack(">H", len(pps)), pps,
    )  # fmt: skip
    avc1 = _box(
        b"avc1",
        b"\x00" * 6, struct.pack(">H", 1), b"\x00" * 16, struct.pack(">HH", width, height),
        struct.pack(">II", 0x480000, 0x480000), b"\x00" * 4, struct.pack(">H", 1),
        b"\x00" * 32, struct.pack(">Hh", 0x18, -1), avcc,
    )  # fmt: skip
    stbl = _box(
        b"stbl",
        _full_box(b"stsd", 0, 0, struct.pack(">I", 1), avc1),
        _full_box(b"stts", 0, 0, struct.pack(">III", 1, len(frames), delta)),
        _full_box(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, len(frames), 1)),
        _full_box(b"stsz", 0, 0, struct.pack(">II", 0, len(frames)),
                  b"".join(struct.pack(">I", len(s)) for s in samples)),
        _full_box(b"stco", 0, 0, struct.pack(">II", 1, len(ftyp) + len(free) + 8)),
    )  # fmt: skip
    minf = _box(
        b"minf",
        _full_box(b"vmhd", 0, 1, b"\x00" * 8),
        _box(b"dinf", _full_box(b"dref", 0, 0, struct.pack(">I", 1), _full_box(b"url ", 0, 1))),
        stbl,
    )
    mdia = _box(
        b"mdia",
        _full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, duration, 0x55C4, 0)),
        _full_box(b"hdlr", 0, 0, b"\x00" * 4, b"vide", b"\x00" * 12, b"VideoHandler\x00"),
        minf,
    )
    tkhd = _full_box(
        b"tkhd", 0, 3,
        struct.pack(">IIIII", 0, 0, 1, 0, duration), b"\x00" * 8, struct.pack(">hhhH", 0, 0, 0, 0),
        _MATRIX, struct.pack(">II", width << 16, height << 16),
    )  # fmt: skip
    mvhd = _full_box(
        b"mvhd", 0, 0,
        struct.pack(">IIIIIH", 0, 0, timescale, duration, 0x10000, 0x100), b"\x00" * 10,
        _MATRIX, b"\x00" * 24, struct.pack(">I", 2),
    )  # fmt: skip
    return ftyp + free + mdat + _box(b"moov", mvhd, _box(b"trak", tkhd, mdia))


class _LsbBits:
    """The little-endian bit writer of WebP lossless (VP8L)."""

    def __init__(self):
        self.value = 0
        self.count = 0

    def put(self, n: int, value: int) -> None:
        self.value |= (value & ((1 << n) - 1)) << self.count
        self.count += n

    def data(self) -> bytes:
        return self.value.to_bytes((self.count + 7) // 8, "little")


_REVERSED_BYTE = [int(f"{i:08b}"[::-1], 2) for i in range(256)]


def _vp8l_flat_code(bits: _LsbBits, used: int, alphabet: int) -> None:
    """A prefix code giving each of the first `used` symbols 8 bits and the rest none.

    Code lengths are sent with a two-symbol code-length code: "0" for length 0
    and "1" for length 8 (positions 2 and 11 in VP8L's code-length order).
    """
    bits.put(1, 0)  # normal (not simple) code
    bits.put(4, 12 - 4)  # 12 code-length-code lengths follow
    for symbol in (17, 18, 0, 1, 2, 3, 4, 5, 16, 6, 7, 8):
        bits.put(3, 1 if symbol in (0, 8) else 0)
    bits.put(1, 0)  # no max_symbol: every length is sent
    for symbol in range(alphabet):
        bits.put(1, 1 if symbol < used else 0)


def vp8l(image: Image) -> bytes:
    """A WebP lossless bitstream: no transforms, no cache, flat 8-bit codes for every channel."""
    bits = _LsbBits()
    bits.put(8, 0x2F)
    bits.put(14, image.width - 1)
    bits.put(14, image.height - 1)
    bits.put(1, 0)  # no alpha
    bits.put(3, 0)  # version
    bits.put(1, 0)  # no transform
    bits.put(1, 0)  # no colour cache
    bits.put(1, 0)  # no meta prefix codes
    _vp8l_flat_code(bits, 256, 256 + 24)  # green + length prefixes
    for _ in range(3):  # red, blue, alpha
        _vp8l_flat_code(bits, 256, 256)
    bits.put(1, 1)  # distance: a simple code with one 1-bit symbol (never used)
    bits.put(1, 0)
    bits.put(1, 0)
    bits.put(1, 0)
    px = image.pixels
    rev = _REVERSED_BYTE
    for i in range(0, len(px), 3):
        r, g, b = px[i], px[i + 1], px[i + 2]
        bits.put(32, rev[g] | rev[r] << 8 | rev[b] << 16 | 0xFF << 24)
    return bits.data()


def _riff_chunk(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")


def webp(frames: list[Image], fps: float, loop: int = 0) -> bytes:
    """A lossless WebP; animated (VP8X + ANIM + ANMF) when there is more than one frame."""
    first = frames[0]
    if len(frames) == 1:
        body = _riff_chunk(b"VP8L", vp8l(first))
    else:
        size = (first.width - 1).to_bytes(3, "little") + (first.height - 1).to_bytes(3, "little")
        body = _riff_chunk(b"VP8X", bytes((0x02, 0, 0, 0)) + size)
        body += _riff_chunk(b"ANIM", struct.pack("<IH", 0, loop))
        duration = max(1, round(1000 / max(fps, 0.001))).to_bytes(3, "little")
        for frame in frames:
            picture = Image(first.width, first.height, frame.pixels)
            header = b"\x00" * 6 + size + duration + b"\x02"  # no blending, no disposal
            body += _riff_chunk(b"ANMF", header + _riff_chunk(b"VP8L", vp8l(picture)))
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body
