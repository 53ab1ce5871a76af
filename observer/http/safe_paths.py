"""Read-only access to files under a task's sandbox or log directory, and nothing else.

Every route that touches a task's files goes through here (JSON, logs, downloads and the HTML
browser alike). A request path is first checked as text (no absolute paths, no `..` component,
no NUL byte: 400), then resolved with `realpath` and accepted only if the result lies inside the
resolved base *by path components*. Aurora compared strings, so `<sandbox>-x` passed as being
inside `<sandbox>`; and since `realpath` follows every link, a symlink that leaves the base is
refused too (403). Files are opened with O_NOFOLLOW on the resolved path (a link swapped in
after the check is refused) and must be regular files; they are read in bounded chunks.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from xml.sax.saxutils import escape

MAX_CHUNK_LENGTH = 1024 * 1024  # bytes per /logdata or /filedata answer (Aurora defined 16 MB, unenforced)
STREAM_CHUNK = 64 * 1024


class PathRefused(Exception):
    """A path the observer will not serve: `status` is the HTTP status, `str()` the reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return self.message


def check_relative(path: str | None) -> str:
    """`path` as a relative path ('.' for none), or PathRefused(400) if it is unsafe as text."""
    if path is None or path == "":
        return "."
    if "\x00" in path:
        raise PathRefused(400, "Refused path: it contains a NUL byte")
    if path.startswith("/") or os.path.isabs(path):
        raise PathRefused(400, "Refused path %r: absolute paths are not allowed (give a path "
                               "relative to the sandbox)" % path)
    if ".." in path.replace("\\", "/").split("/"):
        raise PathRefused(400, "Refused path %r: '..' is not allowed" % path)
    return path


def check_name(name: str, what: str = "name") -> str:
    """A single path component (a process name, a log type), or PathRefused(400)."""
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        raise PathRefused(400, "Refused %s %r: it must be a single path component" % (what, name))
    return name


def is_within(base: str, target: str) -> bool:
    """Whether `target` is `base` or below it, comparing whole path components."""
    base_parts = [part for part in base.split(os.sep) if part]
    target_parts = [part for part in target.split(os.sep) if part]
    return target_parts[:len(base_parts)] == base_parts


def resolve(base: str | None, path: str | None, what: str = "sandbox") -> tuple[str, str]:
    """`(real base, real target)` for `path` under `base`; PathRefused if it is not served.

    404 if the base is unknown or missing, 400 for unsafe text, 403 if the resolved target
    (symlinks followed) is outside the resolved base. The target need not exist.
    """
    if not base:
        raise PathRefused(404, "The task has no %s yet (its runner has not started)." % what)
    rel = check_relative(path)
    real_base = os.path.realpath(base)
    if not os.path.isdir(real_base):
        raise PathRefused(404, "%s does not exist." % what.capitalize())
    real_target = os.path.realpath(os.path.join(real_base, rel))
    if not is_within(real_base, real_target):
        raise PathRefused(403, "Refused path %r: it resolves outside the task's %s" % (path, what))
    return real_base, real_target


def relative_to(real_base: str, real_target: str) -> str:
    """`real_target` relative to `real_base` ('.' for the base itself)."""
    return os.path.relpath(real_target, real_base)


def open_regular(real_path: str) -> tuple[int, os.stat_result]:
    """A read-only descriptor of a regular file and its stat; PathRefused(404) otherwise."""
    try:
        fd = os.open(real_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise PathRefused(404, "No such file") from err
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PathRefused(404, "No such file (not a regular file)")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def parse_int(value: str | None, name: str) -> int:
    """A query parameter as an int (-1 when absent); PathRefused(400) if it is not one."""
    if value is None or value == "":
        return -1
    try:
        return int(value)
    except ValueError:
        raise PathRefused(400, "Bad %s %r: give an integer (-1 for the default)" % (name, value)) from None


def read_chunk(real_path: str, offset: int = -1, length: int = -1,
               max_length: int = MAX_CHUNK_LENGTH) -> dict[str, object]:
    """Aurora's pailer chunk: `{offset, length, data}` (data XML-escaped UTF-8) or `{offset, length: 0}`.

    offset -1 means the end of the file, length -1 everything from offset; at most `max_length`
    bytes are returned, so a follower of a large file asks again from `offset + length`.
    """
    if offset < -1 or length < -1:
        raise PathRefused(400, "Bad range offset=%d length=%d: both must be >= -1" % (offset, length))
    fd, st = open_regular(real_path)
    try:
        if offset == -1:
            offset = st.st_size
        if length == -1:
            length = max(0, st.st_size - offset)
        length = min(length, max_length)
        data = os.pread(fd, length, offset) if length > 0 else b""
    finally:
        os.close(fd)
    if data:
        return {"offset": offset, "length": len(data), "data": escape(data.decode("utf-8", "replace"))}
    return {"offset": offset, "length": 0}


def stream(fd: int, chunk: int = STREAM_CHUNK) -> Iterator[bytes]:
    """The file's bytes in bounded chunks; closes `fd` when done or abandoned."""
    try:
        while True:
            data = os.read(fd, chunk)
            if not data:
                return
            yield data
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Entry:
    """One directory entry as a listing shows it (`ls -l`-like fields)."""

    name: str
    is_dir: bool
    is_link: bool
    size: int
    mtime: float
    mode: str
    uid: int
    gid: int


def list_dir(real_base: str, real_dir: str) -> list[Entry]:
    """The entries of a resolved directory, directories first then by name.

    A symlink is listed as what it points to when that stays inside `real_base`, else as a
    dangling link (is_dir False, size 0) so it is shown but cannot be followed.
    """
    entries = []
    try:
        with os.scandir(real_dir) as it:
            found = list(it)
    except OSError as err:
        raise PathRefused(404, "Cannot list directory: %s" % (err.strerror or err)) from err
    for entry in found:
        try:
            st = entry.stat(follow_symlinks=False)
            is_link = stat.S_ISLNK(st.st_mode)
            if is_link:
                target = os.path.realpath(entry.path)
                if is_within(real_base, target):
                    try:
                        st = os.stat(target)
                    except OSError:
                        pass
            entries.append(Entry(entry.name, stat.S_ISDIR(st.st_mode), is_link,
                                 st.st_size if not stat.S_ISDIR(st.st_mode) else 0, st.st_mtime,
                                 stat.filemode(st.st_mode), st.st_uid, st.st_gid))
        except OSError:
            continue
    entries.sort(key=lambda e: (not e.is_dir, e.name))
    return entries
