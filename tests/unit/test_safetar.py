"""Safe extraction, with tarfile's data filter and with the checks for Pythons without it."""

import io
import os
import tarfile

import pytest

from bacalhau_py import safetar


def archive(*members: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buffer.seek(0)
    return buffer


def member(name: str, kind=tarfile.REGTYPE, linkname: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, mode
    return info


@pytest.fixture(params=["data filter", "own checks"])
def extract(request, monkeypatch):
    if request.param == "own checks":
        monkeypatch.setattr(safetar, "HAS_DATA_FILTER", False)
    elif not safetar.HAS_DATA_FILTER:
        pytest.fail("this Python has no tarfile data filter to compare with")

    def run(buffer, dest):
        with tarfile.open(fileobj=buffer, mode="r|") as tar:
            safetar.extract_all(tar, dest)

    return run


def test_a_normal_archive_extracts(extract, tmp_path):
    extract(archive((member("dir", tarfile.DIRTYPE, mode=0o755), None), (member("dir/f", mode=0o4755), b"x"),
                    (member("dir/link", tarfile.SYMTYPE, "f"), None)), tmp_path)
    assert (tmp_path / "dir" / "f").read_bytes() == b"x"
    assert (tmp_path / "dir" / "link").read_bytes() == b"x"
    assert not (tmp_path / "dir" / "f").stat().st_mode & 0o4000  # no setuid from an archive


@pytest.mark.parametrize("bad", [
    member("../evil"),
    member("a/../../evil"),
    member("hard", tarfile.LNKTYPE, "../outside"),
    member("dev", tarfile.CHRTYPE),
], ids=lambda m: f"{m.name}->{m.linkname}" if m.linkname else m.name)
def test_unsafe_members_are_refused(extract, tmp_path, bad):
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(tarfile.TarError):
        extract(archive((bad, b"" if bad.isreg() else None)), dest)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "outside").exists()


def test_an_absolute_name_never_lands_at_that_path(extract, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    absolute = tmp_path / "absolute-evil"
    try:
        extract(archive((member(str(absolute)), b"x")), dest)
    except tarfile.TarError:
        pass  # refused (own checks); the data filter strips the leading "/" instead
    assert not absolute.exists()


def test_a_symlink_leaving_the_destination_is_kept_as_a_link_and_never_written_through(extract, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    extract(archive((member("abs", tarfile.SYMTYPE, str(outside)), None),
                    (member("up", tarfile.SYMTYPE, "../outside"), None)), dest)
    assert os.readlink(dest / "abs") == str(outside) and os.readlink(dest / "up") == "../outside"
    for through in ("abs/evil", "up/evil"):
        with pytest.raises(tarfile.TarError):
            extract(archive((member(through), b"x")), dest)
    with pytest.raises(tarfile.TarError):
        extract(archive((member("abs/link", tarfile.SYMTYPE, "/etc"), None)), dest)
    assert list(outside.iterdir()) == []
