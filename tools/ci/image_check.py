"""Check a built image before it is published: print its size, and fail when a shared
library is in it twice.

torch's wheels bring CUDA, cuDNN, cuBLAS and NCCL; a CUDA base image that ships them
too doubles gigabytes for nothing. Two files are "the same library" when their ELF
DT_SONAME is the same (the name the dynamic loader resolves), whatever their paths
or versions. Symbolic links and hard links to one file count once.

Wheels also carry private copies of libraries, loaded by their own RPATH and never by
name: auditwheel's `<package>.libs/` folders (numpy's and scipy's gfortran,
torchvision's zlib and cudart) and triton's bundled CUDA tools. A library whose
copies are all such private ones, but for at most one, is listed as vendored and
does not fail the check: the lock pins those wheels, and only upstream can drop them.

Usage (the release workflow runs it on every image before tagging it):
    python tools/ci/image_check.py IMAGE [IMAGE ...]      # docker export of each image
    python tools/ci/image_check.py --tar ROOTFS.tar       # a root file system as a tar
Exit 0: no library twice; 1: some library twice (each listed with its paths).
"""

from __future__ import annotations

import argparse
import re
import struct
import subprocess
import sys
import tarfile
from collections import defaultdict
from typing import IO

ELF_MAGIC = b"\x7fELF"
DT_NULL, DT_STRTAB, DT_SONAME = 0, 5, 14
PT_LOAD, PT_DYNAMIC = 1, 2
# Enough of any shared object to hold its headers and dynamic section: ELF files put
# them near the start, and the string table they point at, in practice, too.
READ_LIMIT = 64 * 1024 * 1024
# Where wheels keep private, RPATH-loaded copies of libraries.
VENDORED = re.compile(r"/site-packages/[^/]+\.libs/|/site-packages/triton/backends/nvidia/lib/")


def soname(data: bytes) -> str | None:
    """The DT_SONAME of an ELF shared object's bytes, or None (not ELF, or none set)."""
    if data[:4] != ELF_MAGIC or len(data) < 64:
        return None
    is64, little = data[4] == 2, data[5] == 1
    end = "<" if little else ">"
    try:
        if is64:
            phoff, phentsize, phnum = (
                struct.unpack_from(end + "Q", data, 32)[0],
                *struct.unpack_from(end + "HH", data, 54),
            )
        else:
            phoff = struct.unpack_from(end + "I", data, 28)[0]
            phentsize, phnum = struct.unpack_from(end + "HH", data, 42)
        loads, dynamic = [], None
        for i in range(phnum):
            at = phoff + i * phentsize
            if is64:
                p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(
                    end + "IIQQQQ", data, at
                )
            else:
                p_type, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(end + "IIIII", data, at)
            if p_type == PT_LOAD:
                loads.append((p_vaddr, p_offset, p_filesz))
            elif p_type == PT_DYNAMIC:
                dynamic = (p_offset, p_filesz)
        if dynamic is None:
            return None
        entry = struct.Struct(end + ("qQ" if is64 else "iI"))
        strtab = name_at = None
        for at in range(dynamic[0], dynamic[0] + dynamic[1], entry.size):
            tag, value = entry.unpack_from(data, at)
            if tag == DT_NULL:
                break
            if tag == DT_STRTAB:
                strtab = value
            elif tag == DT_SONAME:
                name_at = value
        if strtab is None or name_at is None:
            return None
        # DT_STRTAB is an address: map it to a file offset through the LOAD segments.
        offset = next(
            (off + strtab - vaddr for vaddr, off, size in loads if vaddr <= strtab < vaddr + size),
            strtab,
        )
        start = offset + name_at
        return data[start : data.index(b"\0", start)].decode()
    except (struct.error, ValueError, UnicodeDecodeError):
        return None


def sonames_in_tar(stream: IO[bytes]) -> tuple[dict[str, list[str]], int]:
    """{soname: [paths]} of the shared objects in a tar stream, and its regular files' bytes."""
    found: dict[str, list[str]] = defaultdict(list)
    total = 0
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():  # links (symbolic or hard) are one library, not two
                continue
            total += member.size
            name = member.name.lstrip("./")
            if ".so" not in name.rsplit("/", 1)[-1]:
                continue
            f = tar.extractfile(member)
            if f is None:
                continue
            library = soname(f.read(min(member.size, READ_LIMIT)))
            if library:
                found[library].append("/" + name)
    return dict(found), total


def copies(found: dict[str, list[str]]) -> dict[str, list[str]]:
    """Every library with more than one copy."""
    return {name: sorted(paths) for name, paths in sorted(found.items()) if len(paths) > 1}


def _public(paths: list[str]) -> int:
    return sum(1 for p in paths if not VENDORED.search(p))


def duplicates(found: dict[str, list[str]]) -> dict[str, list[str]]:
    """Libraries present twice where the loader could find either: the check's failures."""
    return {name: paths for name, paths in copies(found).items() if _public(paths) > 1}


def vendored(found: dict[str, list[str]]) -> dict[str, list[str]]:
    """Libraries whose extra copies are all wheels' private ones: listed, not failed."""
    return {name: paths for name, paths in copies(found).items() if _public(paths) <= 1}


def image_size(image: str) -> int:
    done = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Size}}", image],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout.strip())


def check_image(image: str) -> dict[str, list[str]]:
    """{soname: paths} of every shared object in the image."""
    # The image's file system, exported from a container that is created, never run.
    container = subprocess.run(
        ["docker", "create", image, "true"], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        export = subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE)
        found, _ = sonames_in_tar(export.stdout)
        export.stdout.close()
        if export.wait() != 0:
            raise RuntimeError(f"docker export of {image} failed")
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)
    return found


def report(name: str, size: int | None, found: dict[str, list[str]]) -> str:
    twice = duplicates(found)
    lines = [f"{name}: " + (f"{size / 1e9:.2f} GB" if size is not None else "size unknown")]
    private = vendored(found)
    if private:
        lines.append(f"  {len(private)} vendored by wheels (private copies, not counted): ")
        lines[-1] += ", ".join(private)
    if twice:
        lines.append(f"  {len(twice)} shared librar{'y' if len(twice) == 1 else 'ies'} twice:")
        lines += [f"    {lib}: {', '.join(paths)}" for lib, paths in twice.items()]
    else:
        lines.append("  no shared library twice")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="*", help="local images (tags or ids)")
    parser.add_argument("--tar", help="a root file system as a tar file instead")
    args = parser.parse_args(argv)
    failed = False
    if args.tar:
        with open(args.tar, "rb") as f:
            found, size = sonames_in_tar(f)
        print(report(args.tar, size, found))
        failed |= bool(duplicates(found))
    for image in args.images:
        found = check_image(image)
        print(report(image, image_size(image), found))
        failed |= bool(duplicates(found))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
