"""The double's file writers and its PNG reader, checked against the formats' own rules."""

from __future__ import annotations

import struct
import zlib

import pytest

from tests.comfy_double import media

FRAMES = [media.Image.filled(20, 10, c) for c in (0xFF0000, 0x00FF00, 0x0000FF)]


def _forward_filter(kind: int, line: bytes, prev: bytes, bpp: int) -> bytes:
    out = bytearray()
    for i, x in enumerate(line):
        a = line[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if kind == 1:
            pred = a
        elif kind == 2:
            pred = b
        elif kind == 3:
            pred = (a + b) // 2
        else:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        out.append((x - pred) & 0xFF)
    return bytes(out)


def _png_with_filters(width: int, height: int, raw: bytes, colour: int, bpp: int) -> bytes:
    """A PNG as other encoders (Pillow, browsers) write it: a different filter on each row."""
    stride = width * bpp
    rows, prev = [], bytes(stride)
    for y in range(height):
        line = raw[y * stride : (y + 1) * stride]
        kind = y % 5
        rows.append(
            bytes((kind,)) + (line if kind == 0 else _forward_filter(kind, line, prev, bpp))
        )
        prev = line
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    idat = chunk(b"IDAT", zlib.compress(b"".join(rows)))
    return media.PNG_SIGNATURE + chunk(b"IHDR", header) + idat + chunk(b"IEND", b"")


@pytest.mark.parametrize("colour,bpp", [(2, 3), (6, 4), (0, 1)])
def test_png_reader_undoes_every_filter_type(colour, bpp):
    width, height = 7, 10
    raw = bytes(
        (x * 37 + y * 11 + c * 5) % 256
        for y in range(height)
        for x in range(width)
        for c in range(bpp)
    )
    picture = media.read_png(_png_with_filters(width, height, raw, colour, bpp))
    if bpp == 4:
        expected = b"".join(raw[i : i + 3] for i in range(0, len(raw), 4))
    elif bpp == 1:
        expected = b"".join(bytes((v,)) * 3 for v in raw)
    else:
        expected = raw
    assert (picture.width, picture.height, picture.pixels) == (width, height, expected)


def test_png_round_trip_and_refusals():
    picture = media.Image(2, 1, bytes((1, 2, 3, 4, 5, 6)))
    assert media.read_png(media.png(picture, {"prompt": "{}"})) == picture
    with pytest.raises(media.MediaError, match="cannot identify image file"):
        media.read_png(b"GIF89a")


def _boxes(data: bytes, pos: int = 0, end: int | None = None) -> dict:
    end = len(data) if end is None else end
    tree = {}
    containers = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"dinf"}
    while pos < end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        assert 8 <= size <= end - pos
        body = (pos + 8, pos + size)
        tree[kind] = _boxes(data, *body) if kind in containers else data[body[0] : body[1]]
        pos += size
    assert pos == end
    return tree


def test_mp4_boxes_nest_and_index_every_frame():
    data = media.mp4(FRAMES, 8)
    tree = _boxes(data)
    stbl = tree[b"moov"][b"trak"][b"mdia"][b"minf"][b"stbl"]
    assert b"avcC" in stbl[b"stsd"]
    version_flags, default_size, count = struct.unpack(">III", stbl[b"stsz"][:12])
    assert (default_size, count) == (0, 3)
    sizes = struct.unpack(">3I", stbl[b"stsz"][12:])
    (offset,) = struct.unpack(">I", stbl[b"stco"][8:12])
    assert data[offset - 8 : offset - 4] == struct.pack(">I", sum(sizes) + 8)
    # Each sample is one length-prefixed IDR NAL unit.
    (length,) = struct.unpack(">I", data[offset : offset + 4])
    assert length + 4 == sizes[0]
    assert data[offset + 4] & 0x1F == 5


def test_flac_frames_carry_valid_checksums():
    samples = [i / 10000 for i in range(9000)]
    data = media.flac(samples, 8000)
    assert data[:4] == b"fLaC"
    info = data[8:42]
    packed = int.from_bytes(info[10:18], "big")
    assert (packed >> 44, packed & (2**36 - 1)) == (8000, 9000)
    pos, frames = 42, 0
    while pos < len(data):
        assert data[pos : pos + 2] == b"\xff\xf8"
        block = 4096 if frames < 2 else 9000 - 8192
        number_len = 1
        header = data[pos : pos + 4 + number_len + 2]
        assert media._crc8(header) == data[pos + len(header)]
        frame_len = len(header) + 1 + 1 + 2 * block
        frame = data[pos : pos + frame_len]
        assert (
            media._crc16(frame)
            == struct.unpack(">H", data[pos + frame_len : pos + frame_len + 2])[0]
        )
        pos += frame_len + 2
        frames += 1
    assert frames == 3


def test_gif_has_one_image_per_frame_and_ends_properly():
    data = media.gif(FRAMES, 4)
    assert data.startswith(b"GIF89a") and data.endswith(b"\x3b")
    assert data.count(b"\x21\xf9\x04") == 3
    assert struct.unpack("<HH", data[6:10]) == (20, 10)


def test_webp_riff_sizes_add_up():
    for frames in (FRAMES[:1], FRAMES):
        data = media.webp(frames, 6)
        assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
        assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
    assert media.webp(FRAMES, 6)[12:16] == b"VP8X"
    assert media.webp(FRAMES[:1], 6)[12:16] == b"VP8L"
