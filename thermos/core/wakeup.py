"""Waking the runner the moment something happens, instead of polling once a second.

Three event sources, all multiplexed by one poll():
* inotify on the task's checkpoint directory: a coordinator appended a record;
* a pidfd per live coordinator: it exited (works for coordinators adopted from a dead runner too,
  which SIGCHLD never reports);
* SIGCHLD through the signal wakeup fd: one of our children changed state.
Each source degrades to plain timeouts where the kernel or the thread does not allow it, so the
runner is event-driven where it can be and never wrong where it cannot.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import select
import signal
import struct
import threading

log = logging.getLogger(__name__)

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
_EVENT = struct.Struct("iIII")

_libc: ctypes.CDLL | None = None


def _load_libc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        try:
            try:  # the usual soname first: find_library forks ldconfig
                _libc = ctypes.CDLL("libc.so.6", use_errno=True)
            except OSError:
                _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        except OSError:
            return None
    return _libc


def inotify_watch(directory: str) -> int | None:
    """A non-blocking inotify fd watching `directory` for appends and new files, or None."""
    libc = _load_libc()
    if libc is None or not hasattr(libc, "inotify_init1"):
        return None
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        log.warning("inotify unavailable (%s); falling back to polling", os.strerror(ctypes.get_errno()))
        return None
    mask = IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO
    if libc.inotify_add_watch(fd, os.fsencode(directory), mask) < 0:
        log.warning("cannot watch %s (%s); falling back to polling", directory,
                    os.strerror(ctypes.get_errno()))
        os.close(fd)
        return None
    return fd


def _inotify_names(data: bytes) -> list[str]:
    names, offset = [], 0
    while offset + _EVENT.size <= len(data):
        _, _, _, length = _EVENT.unpack_from(data, offset)
        raw = data[offset + _EVENT.size:offset + _EVENT.size + length]
        names.append(raw.split(b"\0", 1)[0].decode(errors="replace"))
        offset += _EVENT.size + length
    return names


def _drain(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        except OSError as err:
            if err.errno == errno.EINTR:
                continue
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


class Waker:
    """Blocks until a coordinator writes, a watched pid exits, a child changes state, or a timeout."""

    def __init__(self, directory: str, ignore_names: tuple[str, ...] = ("runner",)) -> None:
        os.makedirs(directory, exist_ok=True)
        self._ignore = set(ignore_names)
        self._poll = select.poll()
        self._inotify = inotify_watch(directory)
        if self._inotify is not None:
            self._poll.register(self._inotify, select.POLLIN)
        self._pidfds: dict[int, int] = {}
        self._signal_r: int | None = None
        self._signal_w: int | None = None
        self._old_wakeup_fd: int | None = None
        self._old_sigchld: object = None
        if threading.current_thread() is threading.main_thread():
            self._signal_r, self._signal_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._old_wakeup_fd = signal.set_wakeup_fd(self._signal_w, warn_on_full_buffer=False)
            self._old_sigchld = signal.signal(signal.SIGCHLD, _ignore_signal)
            self._poll.register(self._signal_r, select.POLLIN)

    @property
    def event_driven(self) -> bool:
        return self._inotify is not None

    def watch_pid(self, pid: int) -> None:
        if pid in self._pidfds or not hasattr(os, "pidfd_open"):
            return
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return  # already gone; the runner's lost-process check handles it
        os.set_inheritable(fd, False)
        self._pidfds[pid] = fd
        self._poll.register(fd, select.POLLIN)

    def watching(self, pid: int) -> bool:
        """True while `pid` is watched and has not exited (its pidfd has not fired)."""
        return pid in self._pidfds

    def unwatch_pid(self, pid: int) -> None:
        fd = self._pidfds.pop(pid, None)
        if fd is not None:
            self._poll.unregister(fd)
            os.close(fd)

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds; True if woken by an event rather than the clock."""
        try:
            events = self._poll.poll(max(0, int(timeout * 1000 + 0.999)))
        except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for safety
            return True
        woken = False
        for fd, _ in events:
            if fd == self._inotify:
                names = _inotify_names(_drain(fd))
                woken = woken or any(name not in self._ignore for name in names) or not names
            elif fd == self._signal_r:
                _drain(fd)
                woken = True
            else:
                pid = next((p for p, f in self._pidfds.items() if f == fd), None)
                if pid is not None:
                    self.unwatch_pid(pid)
                woken = True
        return woken

    def fds(self) -> list[int]:
        """Descriptors a forked child must close (it must not wake or watch for the runner)."""
        fds = [fd for fd in (self._inotify, self._signal_r, self._signal_w) if fd is not None]
        return fds + list(self._pidfds.values())

    def close(self) -> None:
        for pid in list(self._pidfds):
            self.unwatch_pid(pid)
        if self._signal_w is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd if self._old_wakeup_fd is not None else -1)
            signal.signal(signal.SIGCHLD, self._old_sigchld or signal.SIG_DFL)  # type: ignore[arg-type]
        for fd in (self._inotify, self._signal_r, self._signal_w):
            if fd is not None:
                os.close(fd)
        self._inotify = self._signal_r = self._signal_w = None


def _ignore_signal(signum: int, frame: object) -> None:
    """A Python-level SIGCHLD handler, so the interpreter writes to the wakeup fd."""


def reset_in_child(waker: Waker | None) -> None:
    """In a freshly forked child: forget the runner's wakeup machinery."""
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:
        pass
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    if waker is not None:
        for fd in waker.fds():
            try:
                os.close(fd)
            except OSError:
                pass
