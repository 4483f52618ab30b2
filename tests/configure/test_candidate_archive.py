"""The candidate site a dry run sends to the peer: packed on the primary, unpacked on the peer
under Debian 12's Python 3.11.2 (no tarfile extraction filters), refusing a hostile archive."""

import base64
import io
import tarfile
from pathlib import Path

import pytest

from kisscluster.configure import gitsite, nodeside

pytestmark = pytest.mark.fast


def test_a_site_round_trips(example_site: Path, tmp_path: Path):
    """With the site's own VM templates too (an adopted site's vm-templates/)."""
    (example_site / "vm-templates").mkdir()
    (example_site / "vm-templates" / "gaia.conf.jinja").write_text("QEMU_ARGS=-m 64\n")
    text = nodeside.pack_candidate(example_site)
    into = nodeside.unpack_candidate(text, tmp_path / "candidate")
    for part in nodeside.CONFIG_PATHS:
        for original in (example_site / part).rglob("*"):
            copy = into / original.relative_to(example_site)
            assert (
                copy.is_dir() if original.is_dir() else copy.read_bytes() == original.read_bytes()
            )


def archive(add) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        add(tar)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def member(tar: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE, **fields) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in fields.items():
        setattr(info, key, value)
    data = b"x: 1\n" if kind == tarfile.REGTYPE else b""
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


HOSTILE = {
    "absolute path": lambda t: member(t, "/tmp/kisscluster-owned"),
    "climbs out": lambda t: member(t, "pillar/../../kisscluster-owned"),
    "outside the site": lambda t: member(t, "etc/cron.d/owned"),
    "symlink out": lambda t: member(t, "pillar/top.sls", tarfile.SYMTYPE, linkname="/etc/passwd"),
    "hard link out": lambda t: member(t, "pillar/x", tarfile.LNKTYPE, linkname="/etc/shadow"),
    "device": lambda t: member(t, "pillar/sda", tarfile.BLKTYPE, devmajor=8, devminor=0),
    "fifo": lambda t: member(t, "vm-config/pipe", tarfile.FIFOTYPE),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_archive_is_refused_before_anything_is_written(tmp_path: Path, kind: str):
    def add(tar: tarfile.TarFile) -> None:
        member(tar, "pillar/cluster.yml")  # a harmless member first: it must not be written
        HOSTILE[kind](tar)

    into = tmp_path / "deep" / "candidate"
    into.mkdir(parents=True)
    with pytest.raises(ValueError, match="candidate archive"):
        nodeside.unpack_candidate(archive(add), into)
    assert list(into.iterdir()) == []
    assert not (tmp_path / "kisscluster-owned").exists()


def test_a_site_without_its_own_templates_round_trips_and_the_copy_has_none(
    example_site: Path, tmp_path: Path
):
    into = nodeside.unpack_candidate(nodeside.pack_candidate(example_site), tmp_path / "c")
    gitsite.copy_site(example_site, tmp_path / "copy")
    for site in (into, tmp_path / "copy"):
        assert (site / "pillar").is_dir() and not (site / "vm-templates").exists()
