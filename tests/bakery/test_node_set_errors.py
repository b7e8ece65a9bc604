"""Bad node-set input is refused by `bakery validate`, at its line, with the fix: a pip
extra without one pinned version, a `without` that is no package name. (An unpinned
commit: tests/bakery/test_variants_errors.py.)"""

from __future__ import annotations

from tests.bakery.test_variants_errors import edit, problems

COMMIT_LINE = "        commit: 0123456789abcdef0123456789abcdef01234567\n"


def test_a_pip_extra_without_a_pinned_version(bakery, small):
    edit(small, COMMIT_LINE, COMMIT_LINE + "        pip: [imageio-ffmpeg>=0.6, av==14.2.0]\n")
    assert problems(bakery, small) == [
        f"{small}:17:15: node_sets.video.nodes.vhs.pip.0: 'imageio-ffmpeg>=0.6' is not pinned "
        "to one version — write name==version (e.g. imageio-ffmpeg==0.6.0): `bakery lock` "
        "pins the rest, and an image never installs a moving version"
    ]


def test_a_without_entry_that_is_not_a_package_name(bakery, small):
    edit(small, COMMIT_LINE, COMMIT_LINE + "        without: [opencv-python==4.12.0.88]\n")
    assert problems(bakery, small) == [
        f"{small}:17:19: node_sets.video.nodes.vhs.without.0: 'opencv-python==4.12.0.88' is "
        "not a package name — write the name alone, as the node's requirements.txt spells it "
        "(e.g. opencv-python)"
    ]
