"""Where a process's stdout and stderr go: files, the console, both, or nowhere (spec §6.4).

Two shapes of output, chosen by `LogDestinationResolver.handlers_are_files`:

* direct: the handler is a file descriptor handed to the user process as its stdout/stderr
  (file+standard appends with O_APPEND; console; none = /dev/null). The coordinator copies nothing.
* pumped: the user process writes into pipes and the coordinator's `pump()` moves the bytes
  (rotate mode, and `both`) through one reused 64 KiB buffer. (splice(2) into the file was
  measured and was slower than read+write here: the page cache copy happens either way.)

Differences from Aurora, all deliberate:
* Rotation cuts exactly at `max_bytes` instead of after a whole read chunk, so file sizes do not
  depend on how the kernel happened to batch the writes.
* `none` hands /dev/null to the process directly instead of pumping into it.
* A failing log write (disk full) drops that chunk and is counted, never kills the coordinator:
  losing log bytes is better than losing the process's exit status.
* Files are opened relative to a directory descriptor with O_NOFOLLOW, so rotation keeps working
  after a chroot and a symlink planted in the log directory is never followed by root; a file
  that already exists is written only if it is a single-link file of the expected owner (never
  chowned), and new files get mode 0644 whatever the umask (`thermos.common.safe_fs`).

Aurora's calling form still works: `LogDestinationResolver(task_path, destination, mode,
rotate_log_size, rotate_log_backups)` with a TaskPath naming the process and run returns Aurora's
objects from `get_handlers()` (see `LogDestinationResolver`), and `StreamHandler` and `TeeHandler`
take any object with `write`. Log sizes are plain bytes (Aurora took a twitter.common `Amount`).
"""

from __future__ import annotations

import io
import os
import select
import sys
from typing import IO, Any

from thermos.common import safe_fs

STDOUT = "stdout"
STDERR = "stderr"
READ_BUFFER_SIZE = 1 << 16
FILE_MODE = 0o644
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT


class LoggerDestination:
    FILE = "file"
    CONSOLE = "console"
    BOTH = "both"
    NONE = "none"
    ALL = (FILE, CONSOLE, BOTH, NONE)

    @classmethod
    def is_valid(cls, destination: str) -> bool:
        return destination in cls.ALL


class LoggerMode:
    STANDARD = "standard"
    ROTATE = "rotate"
    ALL = (STANDARD, ROTATE)

    @classmethod
    def is_valid(cls, mode: str) -> bool:
        return mode in cls.ALL


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def open_log(name: str, dir_fd: int | None, owner: tuple[int, int] | None, truncate: bool = False) -> int:
    """A log file in dir_fd, created for `owner` (uid, gid) when root creates it for a user."""
    flags = _OPEN_FLAGS | (os.O_TRUNC if truncate else os.O_APPEND)
    fd, _ = safe_fs.open_file_at(dir_fd, name, flags, FILE_MODE, owner=owner)  # type: ignore[arg-type]
    return fd


class Handler:
    """A sink for one output stream; `drain` moves one chunk from a pipe into it."""

    def __init__(self) -> None:
        self.dropped = 0
        self.error: OSError | None = None

    def write(self, data: bytes | memoryview) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def drain(self, src_fd: int, buf: memoryview) -> int:
        """Read one chunk from `src_fd` into this sink; 0 at EOF. Write failures are counted."""
        n = os.readv(src_fd, [buf])
        if n:
            self._write_counted(buf[:n])
        return n

    def _write_counted(self, data: memoryview) -> None:
        try:
            self.write(data)
        except OSError as err:
            self.dropped += len(data)
            self.error = err


class FdHandler(Handler):
    """A descriptor: a log file, the console or /dev/null. Direct mode passes `fileno()` on."""

    def __init__(self, fd: int, owned: bool = True) -> None:
        super().__init__()
        self._fd = fd
        self._owned = owned

    def fileno(self) -> int:
        return self._fd

    def write(self, data: bytes | memoryview) -> None:
        write_all(self._fd, data)

    def close(self) -> None:
        if self._owned and self._fd >= 0:
            os.close(self._fd)
        self._fd = -1


class RotatingFileHandler(Handler):
    """Keeps `name` below `max_bytes`, shifting older output to name.1 .. name.<backups>.

    `name` is relative to `dir_fd` when given (the handler keeps its own duplicate of it), else a
    plain path. The file is truncated on open, as Aurora did.
    """

    def __init__(self, name: str, max_bytes: int, backups: int, dir_fd: int | None = None,
                 owner: tuple[int, int] | None = None) -> None:
        super().__init__()
        if max_bytes <= 0:
            raise ValueError("Log size cannot be less than one byte.")
        if backups <= 0:
            raise ValueError("Log backups cannot be less than one.")
        self.name = name
        self.max_bytes = max_bytes
        self.backups = backups
        self._dir_fd = os.dup(dir_fd) if dir_fd is not None else None
        self._owner = owner
        self._fd = -1
        self._size = 0
        self._open()

    def _open(self) -> None:
        self._size = 0
        self._fd = open_log(self.name, self._dir_fd, self._owner, truncate=True)

    def _backup(self, index: int) -> str:
        return "%s.%d" % (self.name, index)

    def rollover(self) -> None:
        """name.(i) -> name.(i+1) for i = backups-1..1, name -> name.1, then a fresh name.

        The oldest backup is unlinked first so that no rename replaces an existing file: on ext4 a
        replacing rename forces writeback of the renamed file (auto_da_alloc), which halved the
        throughput of small rotation sizes.
        """
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        d = self._dir_fd
        try:
            try:
                os.unlink(self._backup(self.backups), dir_fd=d)
            except FileNotFoundError:
                pass
            for i in range(self.backups - 1, 0, -1):
                try:
                    os.rename(self._backup(i), self._backup(i + 1), src_dir_fd=d, dst_dir_fd=d)
                except FileNotFoundError:
                    pass
            os.rename(self.name, self._backup(1), src_dir_fd=d, dst_dir_fd=d)
        except OSError as err:
            self.error = err  # reopening with O_TRUNC below still keeps the size bound
        self._open()

    def _ready(self) -> None:
        if self._fd < 0:  # a previous reopen failed; try again
            self._open()

    def _advance(self, n: int) -> None:
        self._size += n
        if self._size >= self.max_bytes:
            self.rollover()

    def write(self, data: bytes | memoryview) -> None:
        self._ready()
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view[:self.max_bytes - self._size])
            view = view[n:]
            self._advance(n)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None


class StreamHandler(Handler):
    """Writes to a stream object (a file, `sys.stdout`, a StringIO), flushing after every write.

    Aurora's class of the same name: `close()` closes the stream only when `close=True`. Bytes
    written to a text stream go to its binary buffer (or are decoded when it has none).
    """

    def __init__(self, stream: Any, close: bool = False) -> None:
        super().__init__()
        self._stream = stream
        self._close = close

    @property
    def stream(self) -> Any:
        return self._stream

    def fileno(self) -> int:
        return int(self._stream.fileno())

    def write(self, data: Any) -> None:
        stream = self._stream
        if isinstance(data, bytes | bytearray | memoryview) and isinstance(stream, io.TextIOBase):
            buffer = getattr(stream, "buffer", None)
            stream.flush()
            if buffer is not None:
                buffer.write(data)
                buffer.flush()
                return
            data = bytes(data).decode("utf-8", "replace")
        stream.write(data)
        stream.flush()

    def close(self) -> None:
        if self._close:
            self._stream.close()


class TeeHandler(Handler):
    """Writes every chunk to both sinks; a failure of one does not starve the other.

    The sinks are Handlers, or (as Aurora allowed) any objects with `write` and `close`.
    """

    def __init__(self, first: Any, second: Any) -> None:
        super().__init__()
        self.first = first
        self.second = second

    def write(self, data: bytes | memoryview) -> None:
        try:
            self.first.write(data)
        finally:
            self.second.write(data)

    def drain(self, src_fd: int, buf: memoryview) -> int:
        n = os.readv(src_fd, [buf])
        if n:
            self._write_to(self.first, buf[:n])
            self._write_to(self.second, buf[:n])
            self.dropped = getattr(self.first, "dropped", 0) + getattr(self.second, "dropped", 0)
            self.error = getattr(self.second, "error", None) or getattr(self.first, "error", None)
        return n

    @staticmethod
    def _write_to(sink: Any, data: memoryview) -> None:
        if isinstance(sink, Handler):
            sink._write_counted(data)
        else:
            sink.write(data)

    def close(self) -> None:
        try:
            self.first.close()
        finally:
            self.second.close()


class LogDestinationResolver:
    """Builds the stdout and stderr handlers for one process run from its logger settings.

    `logdir` is the run's log directory, or (Aurora's form) a TaskPath with `process` and `run`
    whose `process_logdir` it names. `console` are the descriptors that stand for the
    coordinator's own stdout and stderr; `owner` (uid, gid) is applied to files created while
    still root; `dir_fd` is the log directory, already opened safely.

    Given a TaskPath, `get_handlers()` returns what Aurora's did, made as safely as the rest:
    console -> `sys.stdout`, `sys.stderr` themselves; file (standard) -> binary file objects
    opened for append; none -> `StreamHandler`s over /dev/null; both -> `TeeHandler`s of a
    `StreamHandler(sys.stdout/err)` and the file; rotate -> `RotatingFileHandler`s. The log
    directory is created if missing, as Aurora's `safe_open` did.
    """

    def __init__(self, logdir: Any, destination: str = LoggerDestination.FILE,
                 mode: str = LoggerMode.STANDARD, rotate_log_size: int | None = None,
                 rotate_log_backups: int | None = None, console: tuple[int, int] = (1, 2),
                 owner: tuple[int, int] | None = None, dir_fd: int | None = None) -> None:
        if not LoggerDestination.is_valid(destination):
            raise ValueError("Logger destination %s is invalid." % destination)
        if not LoggerMode.is_valid(mode):
            raise ValueError("Logger mode %s is invalid." % mode)
        if mode == LoggerMode.ROTATE:
            if rotate_log_size is None or rotate_log_size <= 0:
                raise ValueError("Log size cannot be less than one byte.")
            if rotate_log_backups is None or rotate_log_backups <= 0:
                raise ValueError("Log backups cannot be less than one.")
        self.pathspec = logdir if hasattr(logdir, "getpath") else None  # Aurora's TaskPath form
        self.logdir: str = logdir.getpath("process_logdir") if self.pathspec is not None else logdir
        self.destination = destination
        self.mode = mode
        self.rotate_log_size = rotate_log_size
        self.rotate_log_backups = rotate_log_backups
        self.console = console
        self.owner = owner
        self.dir_fd = dir_fd  # the run's log directory, opened safely by the runner

    @property
    def handlers_are_files(self) -> bool:
        """True when the handlers are descriptors to give the process directly (no pump).

        `none` is direct /dev/null, except in Aurora's form, whose StreamHandlers were pumped.
        """
        if self.destination == LoggerDestination.NONE:
            return self.pathspec is None
        return self.destination == LoggerDestination.CONSOLE or (
            self.destination == LoggerDestination.FILE and self.mode == LoggerMode.STANDARD)

    def get_handlers(self) -> tuple[Any, Any, bool]:
        """(stdout, stderr, handlers_are_files); files are created here."""
        if self.pathspec is not None:
            return self._aurora_handlers()
        if self.destination == LoggerDestination.NONE:
            return self._devnull(), self._devnull(), True
        if self.destination == LoggerDestination.CONSOLE:
            return FdHandler(self.console[0], owned=False), FdHandler(self.console[1], owned=False), True
        dir_fd = os.dup(self.dir_fd) if self.dir_fd is not None else safe_fs.open_dir(self.logdir)
        try:
            stdout, stderr = self._file(STDOUT, dir_fd), self._file(STDERR, dir_fd)
        finally:
            os.close(dir_fd)
        if self.destination == LoggerDestination.BOTH:
            stdout = TeeHandler(FdHandler(self.console[0], owned=False), stdout)
            stderr = TeeHandler(FdHandler(self.console[1], owned=False), stderr)
            return stdout, stderr, False
        return stdout, stderr, self.handlers_are_files

    def _aurora_handlers(self) -> tuple[Any, Any, bool]:
        """What Aurora's resolver returned for the same settings (see the class docstring)."""
        if self.destination == LoggerDestination.NONE:
            return (StreamHandler(open(os.devnull, "wb"), close=True),
                    StreamHandler(open(os.devnull, "wb"), close=True), False)
        if self.destination == LoggerDestination.CONSOLE:
            return sys.stdout, sys.stderr, True
        dir_fd = os.dup(self.dir_fd) if self.dir_fd is not None else safe_fs.open_dir(
            self.logdir, create_mode=0o755, leaf_owner=self.owner)
        try:
            if self.mode == LoggerMode.STANDARD and self.destination == LoggerDestination.FILE:
                return self._file_object(STDOUT, dir_fd), self._file_object(STDERR, dir_fd), True
            stdout, stderr = self._file(STDOUT, dir_fd), self._file(STDERR, dir_fd)
        finally:
            os.close(dir_fd)
        if self.destination == LoggerDestination.BOTH:
            return (TeeHandler(StreamHandler(sys.stdout), stdout),
                    TeeHandler(StreamHandler(sys.stderr), stderr), False)
        return stdout, stderr, False

    def _file_object(self, name: str, dir_fd: int) -> IO[bytes]:
        return os.fdopen(open_log(name, dir_fd, self.owner), "ab")

    @staticmethod
    def _devnull() -> FdHandler:
        return FdHandler(os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC))

    def _file(self, name: str, dir_fd: int) -> Handler:
        if self.mode == LoggerMode.ROTATE:
            assert self.rotate_log_size is not None and self.rotate_log_backups is not None
            return RotatingFileHandler(name, self.rotate_log_size, self.rotate_log_backups,
                                       dir_fd=dir_fd, owner=self.owner)
        return FdHandler(open_log(name, dir_fd, self.owner))


def pump(streams: dict[int, Handler], read_size: int = READ_BUFFER_SIZE) -> None:
    """Move bytes from each pipe to its handler until every pipe reaches EOF; closes the pipes.

    Event driven (poll without a timeout): an idle coordinator costs no CPU.
    """
    poller = select.poll()
    for fd in streams:
        poller.register(fd, select.POLLIN)
    buf = None
    open_fds = dict(streams)
    while open_fds:
        ready = poller.poll()
        if buf is None:  # allocated on first output: a silent process never dirties it
            buf = memoryview(bytearray(read_size))
        for fd, _ in ready:
            handler = open_fds.get(fd)
            if handler is None:
                continue
            try:
                n = handler.drain(fd, buf)
            except OSError as err:  # the pipe itself failed: treat as EOF
                handler.error = err
                n = 0
            if n == 0:
                poller.unregister(fd)
                del open_fds[fd]
                os.close(fd)
