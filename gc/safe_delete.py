"""Deleting a task's files without ever following a symlink out of the tree being deleted.

Garbage collection runs as root over directories a task's user can write (the sandbox, and in the
Mesos layout the whole executor run directory, checkpoints included). Path-based deletion
(`os.path.isdir` + `shutil.rmtree`, or "everything whose path starts with X") follows whatever
symlink that user planted, so it can be steered into any tree on the host. Here:

* a path is reached from a trusted *anchor* (a directory the operator named, opened normally),
  then component by component with `O_NOFOLLOW | O_DIRECTORY`, so a symlink anywhere below the
  anchor stops the walk instead of redirecting it;
* containment is checked on path components (`/a/bc` is not inside `/a/b`), never on string
  prefixes;
* a tree is removed from directory descriptors (`unlink`/`rmdir` with `dir_fd`); a symlink inside
  it is unlinked, never traversed; each directory opened is checked to be the one just listed
  (device and inode), so a directory swapped for a symlink or moved mid-walk is left alone;
* the walk holds a bounded number of descriptors and climbs back with a verified `..`, so a tree
  thousands of levels deep neither exhausts descriptors nor Python's recursion limit;
* every failure is one line in `Freed.errors`; the rest of the tree is still removed.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

BLOCK_SIZE = 512  # st_blocks unit
MAX_ERRORS = 20  # error lines kept per removal; the rest are counted
_FD_WINDOW = 64  # directory descriptors held open at once during a walk

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def format_bytes(count: float) -> str:
    """1536 -> '1.5 KiB' (binary units, as `thermos gc --max_space` takes them)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024:
            return ("%d %s" if unit == "B" else "%.1f %s") % (count, unit)
        count /= 1024
    return "%.1f TiB" % count


class UnsafePath(Exception):
    """A path that cannot be reached without following a symlink, or lies outside its scope."""


@dataclass
class Freed:
    """What a removal did: allocated bytes released, entries removed, one line per failure."""

    bytes: int = 0
    files: int = 0
    dirs: int = 0
    errors: list[str] = field(default_factory=list)
    more_errors: int = 0

    def error(self, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)
        else:
            self.more_errors += 1

    def add(self, other: Freed) -> None:
        self.bytes += other.bytes
        self.files += other.files
        self.dirs += other.dirs
        for message in other.errors:
            self.error(message)
        self.more_errors += other.more_errors

    @property
    def ok(self) -> bool:
        return not self.errors and not self.more_errors


def components(path: str) -> tuple[str, ...]:
    """The components of an absolute path, refusing `..` (it would climb out of a scope)."""
    if not path or not path.startswith("/"):
        raise UnsafePath("%s is not an absolute path" % (path or "''"))
    return _components(path)


@functools.lru_cache(maxsize=16)  # a task's few paths are split many times over (small: RSS)
def _components(path: str) -> tuple[str, ...]:
    parts = tuple(part for part in path.split("/") if part and part != ".")
    if ".." in parts:
        raise UnsafePath("%s contains '..'" % path)
    return parts


def is_within(path: str, scope: str, strict: bool = False) -> bool:
    """Whether `path` is `scope` or below it, compared component by component (no symlinks resolved)."""
    try:
        inner, outer = components(path), components(scope)
    except UnsafePath:
        return False
    if strict and len(inner) == len(outer):
        return False
    return inner[:len(outer)] == outer


def _is_symlink_error(err: OSError) -> bool:
    return err.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)


def open_below(anchor: str | int, relative: Sequence[str], what: str | None = None,
               display: str | None = None) -> int:
    """A descriptor of `anchor/relative...`, opening each relative component without following symlinks.

    `anchor` is trusted: a path from the configuration (opened normally) or a descriptor already
    reached safely (duplicated). Raises UnsafePath (one line) when a component is a symlink or not
    a directory, OSError for anything else (missing, permission). `display` names the anchor in
    messages when it is a descriptor.
    """
    if isinstance(anchor, int):
        fd = os.dup(anchor)
    else:
        fd = os.open(anchor, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, part in enumerate(relative):
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as err:
                if _is_symlink_error(err) and _lexists_at(fd, part):
                    walked = os.path.join(display or str(anchor), *relative[:i + 1])
                    raise UnsafePath("%s is a symlink or not a directory: not followed%s" % (
                        walked, "" if what is None else " (%s left in place)" % what)) from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


@functools.lru_cache(maxsize=256)
def _realpath_cached(path: str) -> str:
    return os.path.realpath(path)


def real_below(anchor: str, relative: Sequence[str]) -> str:
    """The real path of anchor/relative when `relative` was walked without symlinks (anchor's is cached)."""
    return os.path.join(_realpath_cached(anchor), *relative)


def _lexists_at(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        return True
    except OSError:
        return False


class Anchors:
    """Trusted directories from which deeper paths are walked without following symlinks.

    An anchor is a path (trusted configuration, opened normally) or `(path, fd, real path)`: a
    directory already reached safely, so that walks start there instead of repeating the way down.
    `scope` limits what may be removed further: a target must lie within it (by components).
    """

    def __init__(self, anchors: Iterable[str | tuple[str, int, str]], scope: str | None = None) -> None:
        self._anchors: list[tuple[str, str | int, list[tuple[str, ...]]]] = []
        for anchor in anchors:
            if isinstance(anchor, tuple):
                path, opener, real = anchor
            else:
                path, opener, real = anchor, anchor, None
            if not path:
                continue
            path = os.path.normpath(path)
            spellings = []
            for spelling in dict.fromkeys((path, real or _realpath_cached(path))):
                try:
                    spellings.append(components(spelling))
                except UnsafePath:
                    continue
            self._anchors.append((path, opener, spellings))
        self._scope = scope

    @property
    def scope(self) -> str | None:
        return self._scope

    def locate(self, path: str) -> tuple[str | int, tuple[str, ...]]:
        """`(anchor, components below it)` for `path`, the anchor being the longest that contains it.

        An anchor matches as written or as its real path (`/var/run` or `/run`); the scope is
        checked on the path spelled with the anchor as written.
        """
        parts = components(path)
        best: tuple[str, str | int, tuple[str, ...], int] | None = None
        for display, opener, spellings in self._anchors:
            for prefix in spellings:
                if parts[:len(prefix)] == prefix and (best is None or len(prefix) > best[3]):
                    best = (display, opener, parts[len(prefix):], len(prefix))
        if best is None:
            raise UnsafePath("%s is outside every trusted root (%s)" % (
                path, ", ".join(a[0] for a in self._anchors) or "none"))
        display, opener, rest, _ = best
        if self._scope is not None and not is_within(os.path.join(display, *rest), self._scope):
            raise UnsafePath("%s is outside %s" % (path, self._scope))
        return opener, rest

    def open_dir(self, path: str, what: str | None = None) -> int:
        """A descriptor of directory `path`, reached from its anchor without following symlinks."""
        opener, parts = self.locate(path)
        return open_below(opener, parts, what=what, display=self._display(opener))

    def _display(self, opener: str | int) -> str:
        return next((display for display, o, _ in self._anchors if o == opener), str(opener))

    def remove(self, path: str, keep: str | None = None, allow_file: bool = True,
               unlink_symlink: bool = False) -> Freed:
        """Remove `path` (a file, or a directory tree) if it exists; a missing path frees nothing.

        With `keep`, a path inside `path` that is left in place together with the directories
        leading to it. A `path` that is itself a symlink raises UnsafePath and is left in place
        (it names something outside the tree being collected), unless `unlink_symlink` says to
        unlink the link itself.
        """
        anchor, parts = self.locate(path)
        if not parts:
            raise UnsafePath("refusing to remove the trusted root %s itself" % path)
        keep_parts: Sequence[str] | None = None
        if keep is not None and is_within(keep, path, strict=True):
            keep_parts = components(keep)[len(components(path)):]
        try:
            parent = open_below(anchor, parts[:-1], what=path, display=self._display(anchor))
        except FileNotFoundError:
            return Freed()
        try:
            return remove_at(parent, parts[-1], path, keep_parts, allow_file=allow_file,
                             unlink_symlink=unlink_symlink)
        finally:
            os.close(parent)


def remove_at(parent_fd: int, name: str, display: str, keep: Sequence[str] | None = None,
              allow_file: bool = True, unlink_symlink: bool = False) -> Freed:
    """Remove the entry `name` of the directory `parent_fd`: a file, or a whole tree walked by descriptor."""
    freed = Freed()
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return freed
    if stat.S_ISLNK(st.st_mode) and not unlink_symlink:
        raise UnsafePath("%s is a symlink: not followed, left in place" % display)
    if not stat.S_ISDIR(st.st_mode):
        if not allow_file and not stat.S_ISLNK(st.st_mode):
            raise UnsafePath("%s is not a directory: left in place" % display)
        _unlink(parent_fd, name, st, display, freed)
        return freed
    _remove_tree(parent_fd, name, st, display, list(keep) if keep else None, freed)
    return freed


def _unlink(dir_fd: int, name: str, st: os.stat_result, where: str | _Frame, freed: Freed) -> None:
    """Unlink `name`; `where` is its path, or the frame of its directory (joined only for a message)."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    except OSError as err:
        path = where if isinstance(where, str) else os.path.join(where.path, name)
        freed.error("cannot remove %s: %s" % (path, err.strerror))
        return
    freed.files += 1
    if st.st_nlink <= 1:  # a hard-linked file keeps its blocks for its other names
        freed.bytes += st.st_blocks * BLOCK_SIZE


class _Frame:
    __slots__ = ("fd", "dev", "ino", "name", "parent", "display", "names", "keep", "blocks")

    def __init__(self, fd: int, st: os.stat_result, name: str, parent: _Frame | None, keep: list[str] | None,
                 display: str | None = None) -> None:
        self.fd: int | None = fd
        self.dev, self.ino, self.blocks = st.st_dev, st.st_ino, st.st_blocks
        self.name = name
        self.parent = parent
        self.display = display  # the top's path; deeper ones are joined only for messages
        self.names: list[str] | None = None
        self.keep = keep  # the components still to descend towards the kept path, or None

    @property
    def path(self) -> str:
        if self.display is not None:
            return self.display
        assert self.parent is not None
        return os.path.join(self.parent.path, self.name)


def _open_verified(parent_fd: int, name: str, st: os.stat_result) -> int | None:
    """Open a directory entry listed as a directory, only if it is still that same directory."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError:
        return None
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        return None
    return fd


def _remove_tree(parent_fd: int, name: str, st: os.stat_result, display: str, keep: list[str] | None,
                 freed: Freed) -> None:
    fd = _open_verified(parent_fd, name, st)
    if fd is None:
        freed.error("cannot remove %s: it changed while being removed (left in place)" % display)
        return
    stack = [_Frame(fd, st, name, None, keep, display)]
    try:
        while stack:
            frame = stack[-1]
            assert frame.fd is not None
            if frame.names is None:
                try:
                    frame.names = os.listdir(frame.fd)
                except OSError as err:
                    freed.error("cannot list %s: %s" % (frame.path, err.strerror))
                    frame.names = []
            if frame.names:
                child = frame.names.pop()
                _visit(stack, frame, child, freed)
                continue
            stack.pop()
            parent = _parent_of(stack, frame, parent_fd, freed)
            os.close(frame.fd)
            frame.fd = None
            if parent is None:
                return
            if frame.keep is not None:
                continue  # an ancestor of the kept path stays
            try:
                os.rmdir(frame.name, dir_fd=parent)
                freed.dirs += 1
                freed.bytes += frame.blocks * BLOCK_SIZE
            except FileNotFoundError:
                pass
            except OSError as err:
                if err.errno != errno.ENOTEMPTY or freed.ok:
                    freed.error("cannot remove %s: %s" % (frame.path, err.strerror))
    finally:
        for frame in stack:
            if frame.fd is not None:
                os.close(frame.fd)


def _visit(stack: list[_Frame], frame: _Frame, child: str, freed: Freed) -> None:
    assert frame.fd is not None
    keep: list[str] | None = None
    if frame.keep is not None and frame.keep[0] == child:
        if len(frame.keep) == 1:
            return  # the kept path itself
        keep = frame.keep[1:]
    try:
        st = os.stat(child, dir_fd=frame.fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    except OSError as err:
        freed.error("cannot inspect %s: %s" % (os.path.join(frame.path, child), err.strerror))
        return
    if not stat.S_ISDIR(st.st_mode):
        if keep is None:
            _unlink(frame.fd, child, st, frame, freed)  # a symlink is unlinked, never followed
        return
    fd = _open_verified(frame.fd, child, st)
    if fd is None:
        freed.error("cannot remove %s: it changed while being removed (left in place)" % (
            os.path.join(frame.path, child)))
        return
    stack.append(_Frame(fd, st, child, frame, keep))
    # The open frames are always the newest _FD_WINDOW: close the one that just left the window.
    if len(stack) > _FD_WINDOW:
        leaving = stack[-_FD_WINDOW - 1]
        if leaving.fd is not None:
            os.close(leaving.fd)
            leaving.fd = None


def _parent_of(stack: list[_Frame], frame: _Frame, top_parent_fd: int, freed: Freed) -> int | None:
    """The descriptor of `frame`'s parent, reopened through a verified `..` if it was closed."""
    if not stack:
        return top_parent_fd
    parent = stack[-1]
    if parent.fd is None:
        assert frame.fd is not None
        try:
            fd = os.open("..", _DIR_FLAGS, dir_fd=frame.fd)
        except OSError as err:
            freed.error("cannot climb back to %s: %s" % (parent.path, err.strerror))
            return _abandon(stack)
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (parent.dev, parent.ino):
            os.close(fd)
            freed.error("cannot remove %s: the tree was moved while being removed (left in place)"
                        % parent.path)
            return _abandon(stack)
        parent.fd = fd
    return parent.fd


def _abandon(stack: list[_Frame]) -> None:
    for frame in stack:
        if frame.fd is not None:
            os.close(frame.fd)
            frame.fd = None
    stack.clear()
    return None
