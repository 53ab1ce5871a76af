"""safe_delete: trees are removed from descriptors, and no symlink ever leads the removal outside."""

import json
import os
import shutil
import tempfile

import pytest
from thermos.gc import safe_delete
from thermos.gc.safe_delete import Anchors, UnsafePath, is_within

from tests.gc.helpers import make_outside, snapshot


@pytest.fixture
def world(tmp_path):
    anchor = tmp_path / "anchor"
    anchor.mkdir()
    outside = make_outside(str(tmp_path / "outside"))
    return str(anchor), outside


def build_tree(top, outside):
    """A sandbox-like tree with symlinks to the outside tree at several depths."""
    os.makedirs(os.path.join(top, "a", "b", "c"))
    for rel, size in (("f1", 10_000), ("a/f2", 5000), ("a/b/c/f3", 70_000)):
        with open(os.path.join(top, rel), "wb") as fp:
            fp.write(b"x" * size)
    os.symlink(outside, os.path.join(top, "escape_dir"))
    os.symlink(os.path.join(outside, "secret"), os.path.join(top, "a", "escape_file"))
    os.symlink(outside, os.path.join(top, "a", "b", "c", "deep_escape"))
    os.symlink("../../../../outside", os.path.join(top, "a", "b", "relative_escape"))


def fd_count():
    return len(os.listdir("/proc/self/fd"))


def test_a_tree_with_symlinks_is_removed_and_the_targets_are_untouched(world):
    anchor, outside = world
    top = os.path.join(anchor, "sandbox")
    build_tree(top, outside)
    before = snapshot(outside)
    entries = [os.path.join(d, n) for d, dirs, files in os.walk(top) for n in [*dirs, *files]]
    expected = sum(os.lstat(path).st_blocks * 512 for path in [top, *entries])
    fds = fd_count()

    freed = Anchors([anchor]).remove(top)

    assert freed.ok and not os.path.lexists(top)
    assert freed.bytes == expected and freed.files == 7 and freed.dirs == 4
    assert snapshot(outside) == before
    assert fd_count() == fds


def test_a_symlinked_top_is_left_in_place_with_one_line(world):
    anchor, outside = world
    link = os.path.join(anchor, "sandbox")
    os.symlink(outside, link)
    before = snapshot(outside)
    with pytest.raises(UnsafePath) as err:
        Anchors([anchor]).remove(link)
    assert str(err.value) == "%s is a symlink: not followed, left in place" % link
    assert os.path.islink(link) and snapshot(outside) == before


def test_a_symlinked_parent_component_is_never_followed(world):
    anchor, outside = world
    os.symlink(outside, os.path.join(anchor, "parent"))
    before = snapshot(outside)
    with pytest.raises(UnsafePath, match="parent is a symlink or not a directory: not followed"):
        Anchors([anchor]).remove(os.path.join(anchor, "parent", "sub"))
    assert snapshot(outside) == before


def test_containment_is_by_components_not_string_prefix(tmp_path):
    anchor = str(tmp_path / "run")
    os.makedirs(anchor)
    sibling = tmp_path / "run2"
    sibling.mkdir()
    (sibling / "data").write_bytes(b"keep")
    with pytest.raises(UnsafePath, match="outside every trusted root"):
        Anchors([anchor]).remove(str(sibling / "data"))
    assert (sibling / "data").read_bytes() == b"keep"
    assert is_within("/a/b/c", "/a/b") and not is_within("/a/bc", "/a/b")
    assert not is_within("/a/b", "/a/b", strict=True)


def test_scope_dots_and_the_anchor_itself_are_refused(tmp_path):
    anchor = str(tmp_path)
    os.makedirs(os.path.join(anchor, "run", "sandbox"))
    scoped = Anchors([anchor], scope=os.path.join(anchor, "run"))
    with pytest.raises(UnsafePath, match="is outside"):
        scoped.remove(os.path.join(anchor, "elsewhere"))
    with pytest.raises(UnsafePath, match="contains '..'"):
        scoped.remove(os.path.join(anchor, "run", "..", "elsewhere"))
    with pytest.raises(UnsafePath, match="not an absolute path"):
        scoped.remove("run/sandbox")
    with pytest.raises(UnsafePath, match="the trusted root"):
        Anchors([anchor]).remove(anchor)
    assert os.path.isdir(os.path.join(anchor, "run", "sandbox"))


def test_missing_paths_free_nothing(world):
    anchor, _ = world
    freed = Anchors([anchor]).remove(os.path.join(anchor, "no", "such", "thing"))
    assert freed.ok and freed.bytes == freed.files == freed.dirs == 0


def test_keep_leaves_the_kept_path_and_its_parents(world):
    anchor, outside = world
    top = os.path.join(anchor, "sandbox")
    build_tree(top, outside)
    logs = os.path.join(top, ".logs", "hello", "0")
    os.makedirs(logs)
    (open(os.path.join(logs, "stdout"), "w")).write("hi\n")
    freed = Anchors([anchor]).remove(top, keep=os.path.join(top, ".logs"))
    assert freed.ok
    assert sorted(os.listdir(top)) == [".logs"]
    with open(os.path.join(logs, "stdout")) as fp:
        assert fp.read() == "hi\n"


def test_a_very_deep_tree_is_removed_within_a_bounded_number_of_descriptors(world):
    anchor, _ = world
    top = os.path.join(anchor, "deep")
    os.mkdir(top)
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(1500):  # deeper than both Python's recursion limit and a descriptor per level
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(os.open("leaf", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    fds = fd_count()
    freed = Anchors([anchor]).remove(top)
    assert freed.ok and freed.dirs == 1501 and freed.files == 1
    assert not os.path.lexists(top) and fd_count() == fds


def test_hard_links_are_removed_but_their_bytes_are_not_counted(world):
    anchor, outside = world
    top = os.path.join(anchor, "sandbox")
    os.mkdir(top)
    target = os.path.join(anchor, "shared")
    with open(target, "wb") as fp:
        fp.write(b"y" * 50_000)
    os.link(target, os.path.join(top, "hardlink"))
    directory_bytes = os.lstat(top).st_blocks * 512
    freed = Anchors([anchor]).remove(top)
    assert freed.files == 1 and freed.dirs == 1 and freed.bytes == directory_bytes
    with open(target, "rb") as fp:
        assert fp.read() == b"y" * 50_000


def test_a_directory_swapped_for_a_symlink_mid_walk_is_unlinked_not_followed(world, monkeypatch):
    """The attacker replaces a subdirectory with a symlink after the walk listed its parent."""
    anchor, outside = world
    top = os.path.join(anchor, "sandbox")
    os.makedirs(os.path.join(top, "victim", "inner"))
    before = snapshot(outside)
    real_listdir = os.listdir
    swapped = []

    def listdir_then_swap(fd):
        names = real_listdir(fd)
        if not swapped and "victim" in names:
            os.rename(os.path.join(top, "victim"), os.path.join(anchor, "moved"))
            os.symlink(outside, os.path.join(top, "victim"))
            swapped.append(True)
        return names

    monkeypatch.setattr(safe_delete.os, "listdir", listdir_then_swap)
    freed = Anchors([anchor]).remove(top)
    monkeypatch.undo()
    assert swapped and freed.ok and not os.path.lexists(top)
    assert snapshot(outside) == before


def test_a_symlink_planted_between_stat_and_open_stops_that_branch(world, monkeypatch):
    """The swap happens after the entry was seen to be a directory: the open refuses the symlink."""
    anchor, outside = world
    top = os.path.join(anchor, "sandbox")
    os.makedirs(os.path.join(top, "victim", "inner"))
    before = snapshot(outside)
    real_stat = os.stat
    swapped = []

    def stat_then_swap(path, *args, **kwargs):
        result = real_stat(path, *args, **kwargs)
        if path == "victim" and not swapped:
            os.rename(os.path.join(top, "victim"), os.path.join(anchor, "moved"))
            os.symlink(outside, os.path.join(top, "victim"))
            swapped.append(True)
        return result

    monkeypatch.setattr(safe_delete.os, "stat", stat_then_swap)
    freed = Anchors([anchor]).remove(top)
    monkeypatch.undo()
    assert swapped and not freed.ok
    assert freed.errors[0] == "cannot remove %s: it changed while being removed (left in place)" % (
        os.path.join(top, "victim"))
    assert os.path.islink(os.path.join(top, "victim"))
    assert snapshot(outside) == before


@pytest.fixture
def open_tmp():
    """A temporary directory every user can reach (pytest's are private to root)."""
    path = tempfile.mkdtemp(prefix="thermos-gc-test-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_permission_error_is_one_line_and_the_rest_is_removed(open_tmp):
    """Run as an unprivileged user (root drops to nobody in a child): a locked directory is one line."""
    anchor = os.path.join(open_tmp, "anchor")
    top = os.path.join(anchor, "sandbox")
    os.makedirs(os.path.join(top, "locked"))
    open(os.path.join(top, "locked", "f"), "w").close()
    open(os.path.join(top, "free"), "w").close()
    uid = 65534 if os.geteuid() == 0 else os.geteuid()
    for directory, dirs, files in os.walk(anchor):
        for name in [".", *dirs, *files]:
            os.chown(os.path.join(directory, name), uid, -1)
    os.chmod(os.path.join(top, "locked"), 0o500)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.setuid(uid)
            freed = Anchors([anchor]).remove(top)
            os.write(write, json.dumps([freed.ok, freed.errors]).encode())
        except BaseException as err:
            os.write(write, json.dumps([None, [repr(err)]]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as fp:
        ok, errors = json.loads(fp.read())
    os.waitpid(pid, 0)
    os.chmod(os.path.join(top, "locked"), 0o700)
    # one line: the directories left non-empty because of it are not reported again
    assert not ok and errors == ["cannot remove %s: Permission denied" % os.path.join(top, "locked", "f")]
    assert not os.path.exists(os.path.join(top, "free"))
    assert os.path.exists(os.path.join(top, "locked", "f"))
