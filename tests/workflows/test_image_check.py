"""tools/ci/image_check.py: a shared library present twice (by soname) fails the release;
wheels' private copies are listed, not failed."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest

from tests.workflows.workflow_files import ci_script

check = ci_script("image_check")
LIBS = ("/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1")
LIBZ = next((Path(p) for p in LIBS if Path(p).exists()), None)
pytestmark = pytest.mark.skipif(LIBZ is None, reason="no libz.so.1 here to build test trees from")


def rootfs(tmp_path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    """A tar of a small root file system: {path: bytes} and {link: target} symlinks."""
    out = tmp_path / "rootfs.tar"
    with tarfile.open(out, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name.lstrip("/"))
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return out


def found(tar: Path) -> dict[str, list[str]]:
    with tar.open("rb") as f:
        return check.sonames_in_tar(f)[0]


def test_the_soname_is_read_from_the_elf_file_not_its_name():
    assert check.soname(LIBZ.resolve().read_bytes()) == "libz.so.1"
    assert check.soname(b"not an elf file") is None
    assert check.soname(Path(shutil.which("python3") or "/bin/sh").resolve().read_bytes()) in (
        None,
        "libpython3.so",
    )


def test_one_library_in_the_os_and_again_in_the_venv_fails(tmp_path, capsys):
    z = LIBZ.resolve().read_bytes()
    tar = rootfs(
        tmp_path,
        {
            "/usr/local/cuda/lib64/libz.so.1.2.13": z,
            "/opt/venv/lib/python3.12/site-packages/nvidia/z/lib/libzz.so": z,
        },
    )
    assert check.duplicates(found(tar)) == {
        "libz.so.1": [
            "/opt/venv/lib/python3.12/site-packages/nvidia/z/lib/libzz.so",
            "/usr/local/cuda/lib64/libz.so.1.2.13",
        ]
    }
    assert check.main(["--tar", str(tar)]) == 1
    out = capsys.readouterr().out
    assert "1 shared library twice:\n    libz.so.1: /opt/venv/" in out


def test_links_count_once_and_wheels_private_copies_are_listed_not_failed(tmp_path, capsys):
    z = LIBZ.resolve().read_bytes()
    tar = rootfs(
        tmp_path,
        {
            "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13": z,
            "/opt/venv/lib/python3.12/site-packages/torchvision.libs/libz.622bbd06.so.1": z,
        },
        links={"/usr/lib/x86_64-linux-gnu/libz.so.1": "libz.so.1.2.13"},
    )
    assert check.duplicates(found(tar)) == {}
    assert list(check.vendored(found(tar))) == ["libz.so.1"]
    assert check.main(["--tar", str(tar)]) == 0
    assert "no shared library twice" in capsys.readouterr().out
