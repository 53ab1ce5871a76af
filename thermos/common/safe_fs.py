"""Reaching paths a task's user can write without letting that user redirect root.

The runner, the coordinator before it drops privileges, the CLI and the GC run as root and work
inside trees the task's user controls (the sandbox, its log directory, sometimes the Mesos run
directory above the checkpoint root). A path-based `open`, `chown` or `makedirs` there follows
whatever symlink the user planted a moment before. Everything here walks from a directory
descriptor one component at a time instead:

* `open_dir` follows a symlink only where nobody but root or this process could have put it (a
  directory that only they can write, or a sticky one when the link is theirs), so `/var/run ->
  /run` keeps working while a link inside a sandbox is refused.
* `makedirs_at` and `open_file_at` never follow a symlink at all (`O_NOFOLLOW`), create with
  `O_EXCL`, set modes explicitly (the umask does not decide) and `fchown` only what they created.
* An existing file that root is about to write must be a plain file with one link, owned by whom
  the caller expects: a hard link to a root-owned file cannot be taken over.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_MAX_SYMLINKS = 40


class UnsafePath(OSError):
    """A path the caller must not use; ``str()`` is one line saying what and how to fix it."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EPERM, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _entries_trusted(st: os.stat_result, euid: int) -> bool:
    """Only root or `euid` can add, remove or rename entries of this directory."""
    return st.st_uid in (0, euid) and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _link_trusted(parent: os.stat_result, link: os.stat_result, euid: int) -> bool:
    if _entries_trusted(parent, euid):
        return True
    # A sticky directory (/tmp) lets only an entry's owner replace it.
    return (parent.st_uid in (0, euid) and bool(parent.st_mode & stat.S_ISVTX)
            and link.st_uid in (0, euid))


def open_dir(path: str, create_mode: int | None = None,
             leaf_owner: tuple[int, int] | None = None) -> int:
    """A descriptor for directory `path`, resolved without following an untrusted symlink.

    With `create_mode`, missing components are created with exactly that mode; `leaf_owner`
    (uid, gid) is given to the last component if this call created it.
    """
    euid = os.geteuid()
    parts = [p for p in os.path.abspath(path).split("/") if p][::-1]  # a stack: next part last
    fd = os.open("/", _DIR_FLAGS)
    where = "/"
    hops = 0
    try:
        while parts:
            name = parts.pop()
            if name == ".":
                continue
            created = False
            try:
                nfd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if create_mode is None:
                    raise FileNotFoundError(errno.ENOENT, "No such directory", os.path.join(where, name)) \
                        from None
                nfd, created = _make_subdir(fd, name, where)
            except OSError as err:
                if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                target = _trusted_link(fd, name, where, euid)
                hops += 1
                if hops > _MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, "Too many levels of symbolic links", path) from None
                if target.startswith("/"):
                    os.close(fd)
                    fd = os.open("/", _DIR_FLAGS)
                    where = "/"
                parts.extend(p for p in target.split("/")[::-1] if p)
                continue
            os.close(fd)
            fd = nfd
            where = os.path.join(where, name)
            if created:
                _claim_new_dir(fd, create_mode, leaf_owner if not parts else None, euid)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _open_subdir(dir_fd: int, name: str, where: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath("%s is not a directory (a symlink or file was put there); remove it"
                             % os.path.join(where, name)) from None
        raise


def _make_subdir(dir_fd: int, name: str, where: str) -> tuple[int, bool]:
    """Create dir_fd/name (0700 until claimed) unless it exists; (descriptor, created)."""
    created = False
    try:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
        created = True
    except FileExistsError:
        pass
    return _open_subdir(dir_fd, name, where), created


def _trusted_link(dir_fd: int, name: str, where: str, euid: int) -> str:
    full = os.path.join(where, name)
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", full)
    if not _link_trusted(os.fstat(dir_fd), st, euid):
        raise UnsafePath("refusing to follow symlink %s: it lies in %s, which other users can write "
                         "(use a real directory there)" % (full, where))
    return os.readlink(name, dir_fd=dir_fd)


def _claim_new_dir(fd: int, mode: int | None, owner: tuple[int, int] | None, euid: int) -> None:
    """Set the mode (and owner) of a directory this process just made, and only that one."""
    st = os.fstat(fd)
    if st.st_uid != euid:
        return  # someone else's directory took its place; leave it as it is
    if mode is not None:
        os.fchmod(fd, mode)
    if owner is not None and (st.st_uid, st.st_gid) != owner:
        os.fchown(fd, *owner)


def makedirs_at(dir_fd: int, parts: list[str], mode: int = 0o755,
                leaf_owner: tuple[int, int] | None = None) -> int:
    """A descriptor for dir_fd/parts[0]/parts[1]/..., created as needed, no symlink followed."""
    euid = os.geteuid()
    fd = os.dup(dir_fd)
    where = "."
    try:
        for i, name in enumerate(parts):
            if not name or name in (".", "..") or "/" in name:
                raise UnsafePath("invalid path component %r" % name)
            nfd, created = _make_subdir(fd, name, where)
            os.close(fd)
            fd = nfd
            where = os.path.join(where, name)
            if created:
                _claim_new_dir(fd, mode, leaf_owner if i == len(parts) - 1 else None, euid)
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_file_at(dir_fd: int, name: str, flags: int, mode: int,
                 owner: tuple[int, int] | None = None,
                 expect_uid: int | None = None) -> tuple[int, bool]:
    """Open (or create) regular file `name` in dir_fd; returns (fd, created).

    A new file gets `mode` and `owner` through its descriptor. An existing one must be a regular
    file with a single link owned by `expect_uid` (default: whoever it is created for), or it is
    refused: root never writes through a planted hard link or a file somebody else moved in.
    `O_TRUNC` in `flags` is applied only after those checks.
    """
    truncate = bool(flags & os.O_TRUNC)
    base = (flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC)) | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(name, base | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=dir_fd)
        created = True
    except FileExistsError:
        try:
            fd = os.open(name, base, dir_fd=dir_fd)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise UnsafePath("refusing to open %s: it is a symlink (remove it)" % name) from None
            if err.errno == errno.ENXIO:  # a FIFO or socket nobody reads: never block on it
                raise UnsafePath("refusing to open %s: it is not a regular file (remove it)" % name) from None
            raise
        created = False
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UnsafePath("refusing to open %s: it is a symlink (remove it)" % name) from None
        raise
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        st = os.fstat(fd)
        if created:
            os.fchmod(fd, mode)
            if owner is not None and (st.st_uid, st.st_gid) != owner:
                os.fchown(fd, *owner)
        else:
            want = expect_uid if expect_uid is not None else (owner[0] if owner else os.geteuid())
            problem = None
            if not stat.S_ISREG(st.st_mode):
                problem = "it is not a regular file"
            elif st.st_nlink != 1:
                problem = "it has %d hard links" % st.st_nlink
            elif st.st_uid != want:
                problem = "it belongs to uid %d, not %d" % (st.st_uid, want)
            if problem is not None:
                raise UnsafePath("refusing to open %s: %s (remove it)" % (name, problem))
            if truncate:
                os.ftruncate(fd, 0)
        return fd, created
    except BaseException:
        os.close(fd)
        raise


def untrusted_ancestor(path: str) -> str | None:
    """The nearest directory above `path` whose entries others can change, if any (for warnings)."""
    euid = os.geteuid()
    current = os.path.dirname(os.path.realpath(path))
    while True:
        try:
            st = os.stat(current)
        except OSError:
            st = None
        if st is not None and not _entries_trusted(st, euid) and not (
                st.st_uid in (0, euid) and st.st_mode & stat.S_ISVTX):
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def check_private_dir(fd: int, where: str) -> None:
    """The checkpoint directory must be ours and writable by nobody else."""
    st = os.fstat(fd)
    euid = os.geteuid()
    if st.st_uid != euid:
        raise UnsafePath("%s belongs to uid %d, not to this runner (uid %d); move it away and start again"
                         % (where, st.st_uid, euid))
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafePath("%s is writable by other users (mode %o); chmod go-w it" % (
            where, stat.S_IMODE(st.st_mode)))
