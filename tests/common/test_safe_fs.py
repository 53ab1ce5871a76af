"""safe_fs: which symlinks are followed, what is refused, and modes that ignore the umask."""

from __future__ import annotations

import os
import stat

import pytest

from thermos.common import safe_fs

ROOT = os.geteuid() == 0


def test_a_symlink_in_a_directory_only_we_can_write_is_followed(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(str(tmp_path / "real"), str(tmp_path / "link"))
    os.chmod(tmp_path, 0o755)
    fd = safe_fs.open_dir(str(tmp_path / "link"))
    try:
        assert os.readlink("/proc/self/fd/%d" % fd) == str(tmp_path / "real")
    finally:
        os.close(fd)


@pytest.mark.skipif(not ROOT, reason="needs a directory owned by another user")
def test_a_symlink_in_a_directory_another_user_owns_is_refused(tmp_path):
    (tmp_path / "target").mkdir()
    os.chown(tmp_path, 65534, 65534)
    os.symlink(str(tmp_path / "target"), str(tmp_path / "link"))
    with pytest.raises(safe_fs.UnsafePath, match="refusing to follow symlink .*link"):
        safe_fs.open_dir(str(tmp_path / "link" / "x"), create_mode=0o700)
    assert not (tmp_path / "target" / "x").exists()


def test_a_group_writable_directory_is_not_trusted_for_symlinks(tmp_path):
    (tmp_path / "target").mkdir()
    os.symlink(str(tmp_path / "target"), str(tmp_path / "link"))
    os.chmod(tmp_path, 0o775)
    with pytest.raises(safe_fs.UnsafePath, match="other users can write"):
        safe_fs.open_dir(str(tmp_path / "link"))


def test_created_directories_and_files_get_their_mode_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        fd = safe_fs.open_dir(str(tmp_path / "a" / "b"), create_mode=0o700)
        try:
            leaf = safe_fs.makedirs_at(fd, ["c", "d"], 0o755)
            try:
                file_fd, created = safe_fs.open_file_at(leaf, "f", os.O_WRONLY | os.O_CREAT, 0o640)
                os.close(file_fd)
            finally:
                os.close(leaf)
        finally:
            os.close(fd)
    finally:
        os.umask(old)
    assert created
    paths = ("a", "a/b", "a/b/c", "a/b/c/d", "a/b/c/d/f")
    modes = {p: stat.S_IMODE(os.stat(tmp_path / p).st_mode) for p in paths}
    assert modes == {"a": 0o700, "a/b": 0o700, "a/b/c": 0o755, "a/b/c/d": 0o755, "a/b/c/d/f": 0o640}


def test_a_planted_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "stdout")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(safe_fs.UnsafePath, match="not a regular file"):
            safe_fs.open_file_at(fd, "stdout", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    finally:
        os.close(fd)


def test_makedirs_at_refuses_a_symlinked_component_and_dot_dot(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    os.symlink(str(tmp_path / "elsewhere"), str(tmp_path / "p"))
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(safe_fs.UnsafePath, match="not a directory"):
            safe_fs.makedirs_at(fd, ["p", "0"])
        with pytest.raises(safe_fs.UnsafePath, match="invalid path component"):
            safe_fs.makedirs_at(fd, ["..", "x"])
    finally:
        os.close(fd)
    assert os.listdir(tmp_path / "elsewhere") == []


def test_an_existing_file_of_another_owner_is_refused(tmp_path):
    if not ROOT:
        pytest.skip("needs root to own a file as another user")
    path = tmp_path / "log"
    path.write_bytes(b"theirs")
    os.chown(path, 65534, 65534)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(safe_fs.UnsafePath, match="belongs to uid 65534"):
            safe_fs.open_file_at(fd, "log", os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o644)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"theirs"  # the truncation never happened
