"""Log destinations, rotation and the pump, without a coordinator (spec §6.4)."""

import os
import pwd
import threading

import pytest

from thermos.core.process_logging import (
    FdHandler,
    Handler,
    LogDestinationResolver,
    LoggerDestination,
    LoggerMode,
    RotatingFileHandler,
    TeeHandler,
    pump,
)

LINE = b"stderr\n"  # 7 bytes: ten of them fill a 70-byte file exactly


class MemoryHandler(Handler):
    def __init__(self):
        super().__init__()
        self.data = bytearray()
        self.closed = False

    def write(self, data):
        self.data += data

    def close(self):
        self.closed = True


def read(path):
    with open(path, "rb") as fp:
        return fp.read()


@pytest.fixture
def logdir(tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    return str(d)


def test_destination_and_mode_names():
    assert LoggerDestination.ALL == ("file", "console", "both", "none")
    assert LoggerMode.ALL == ("standard", "rotate")
    assert LoggerDestination.is_valid("both") and not LoggerDestination.is_valid("syslog")
    assert LoggerMode.is_valid("rotate") and not LoggerMode.is_valid("daily")


@pytest.mark.parametrize("kw", [
    {"destination": "syslog"},
    {"mode": "daily"},
    {"mode": "rotate", "rotate_log_backups": 1},
    {"mode": "rotate", "rotate_log_size": 0, "rotate_log_backups": 1},
    {"mode": "rotate", "rotate_log_size": 10},
    {"mode": "rotate", "rotate_log_size": 10, "rotate_log_backups": 0},
])
def test_resolver_rejects_bad_settings(logdir, kw):
    with pytest.raises(ValueError):
        LogDestinationResolver(logdir, **kw)


def test_resolver_none_is_devnull_and_creates_nothing(logdir):
    stdout, stderr, direct = LogDestinationResolver(logdir, LoggerDestination.NONE).get_handlers()
    try:
        assert direct
        assert isinstance(stdout, FdHandler) and isinstance(stderr, FdHandler)
        assert os.path.samestat(os.fstat(stdout.fileno()), os.stat(os.devnull))
        assert os.listdir(logdir) == []
    finally:
        stdout.close()
        stderr.close()


def test_resolver_console_passes_the_console_descriptors(logdir):
    resolver = LogDestinationResolver(logdir, LoggerDestination.CONSOLE, console=(7, 8))
    stdout, stderr, direct = resolver.get_handlers()
    assert direct
    assert (stdout.fileno(), stderr.fileno()) == (7, 8)
    stdout.close()  # not owned: must not close descriptors 7 and 8
    stderr.close()
    assert os.listdir(logdir) == []


def test_resolver_file_standard_appends(logdir):
    with open(os.path.join(logdir, "stdout"), "wb") as fp:
        fp.write(b"earlier\n")
    stdout, stderr, direct = LogDestinationResolver(logdir).get_handlers()
    assert direct
    stdout.write(b"later\n")
    stdout.close()
    stderr.close()
    assert read(os.path.join(logdir, "stdout")) == b"earlier\nlater\n"
    assert read(os.path.join(logdir, "stderr")) == b""


def test_resolver_file_rotate_truncates(logdir):
    with open(os.path.join(logdir, "stdout"), "wb") as fp:
        fp.write(b"earlier\n")
    resolver = LogDestinationResolver(logdir, mode="rotate", rotate_log_size=70, rotate_log_backups=2)
    stdout, stderr, direct = resolver.get_handlers()
    assert not direct
    assert isinstance(stdout, RotatingFileHandler) and isinstance(stderr, RotatingFileHandler)
    stdout.close()
    stderr.close()
    assert read(os.path.join(logdir, "stdout")) == b""


@pytest.mark.parametrize("mode", ["standard", "rotate"])
def test_resolver_both_tees_console_and_file(logdir, tmp_path, mode):
    console = os.open(str(tmp_path / "console"), os.O_WRONLY | os.O_CREAT)
    try:
        resolver = LogDestinationResolver(logdir, LoggerDestination.BOTH, mode, rotate_log_size=70,
                                          rotate_log_backups=2, console=(console, console))
        stdout, stderr, direct = resolver.get_handlers()
        assert not direct
        assert isinstance(stdout, TeeHandler) and isinstance(stderr, TeeHandler)
        stdout.write(b"out\n")
        stderr.write(b"err\n")
        stdout.close()
        stderr.close()
    finally:
        os.close(console)
    assert read(str(tmp_path / "console")) == b"out\nerr\n"
    assert read(os.path.join(logdir, "stdout")) == b"out\n"
    assert read(os.path.join(logdir, "stderr")) == b"err\n"


def test_tee_writes_both_and_survives_one_failing(tmp_path):
    first, second = MemoryHandler(), MemoryHandler()
    tee = TeeHandler(first, second)
    tee.write(b"TEST")
    tee.write(b"SECOND")
    assert first.data == second.data == b"TESTSECOND"
    tee.close()
    assert first.closed and second.closed

    full = FdHandler(os.open("/dev/full", os.O_WRONLY))
    good = MemoryHandler()
    tee = TeeHandler(full, good)
    r, w = os.pipe()
    os.write(w, b"payload")
    os.close(w)
    assert tee.drain(r, memoryview(bytearray(64))) == 7
    os.close(r)
    assert good.data == b"payload"
    assert tee.dropped == 7 and tee.error is not None
    tee.close()


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 16])
def test_rotation_70_bytes_2_backups_exact_contents(logdir, chunk):
    handler = RotatingFileHandler(os.path.join(logdir, "stderr"), 70, 2)
    data = LINE * 31
    for i in range(0, len(data), chunk):
        handler.write(data[i:i + chunk])
    handler.close()
    assert read(os.path.join(logdir, "stderr")) == LINE
    assert read(os.path.join(logdir, "stderr.1")) == LINE * 10
    assert read(os.path.join(logdir, "stderr.2")) == LINE * 10
    assert not os.path.exists(os.path.join(logdir, "stderr.3"))


def test_rotation_exact_boundary_and_single_backup(logdir):
    path = os.path.join(logdir, "out")
    handler = RotatingFileHandler(path, 10, 1)
    handler.write(b"a" * 10)  # exactly full: rolled over at once
    assert read(path) == b"" and read(path + ".1") == b"a" * 10
    handler.write(b"b" * 25)
    handler.close()
    assert read(path) == b"b" * 5
    assert read(path + ".1") == b"b" * 10  # the a's and the first b's are gone: one backup only
    assert sorted(os.listdir(logdir)) == ["out", "out.1"]


def test_rotation_follows_the_directory_descriptor(tmp_path):
    """Rotation works relative to the directory it started in, even if its path changes (chroot)."""
    first = tmp_path / "first"
    first.mkdir()
    dir_fd = os.open(str(first), os.O_RDONLY | os.O_DIRECTORY)
    try:
        handler = RotatingFileHandler("log", 4, 2, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)  # the handler keeps its own duplicate
    handler.write(b"1234")
    os.rename(str(first), str(tmp_path / "moved"))
    handler.write(b"5678ab")
    handler.close()
    moved = tmp_path / "moved"
    assert read(str(moved / "log")) == b"ab"
    assert read(str(moved / "log.1")) == b"5678"
    assert read(str(moved / "log.2")) == b"1234"


def test_log_files_never_follow_symlinks(logdir, tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"precious")
    os.symlink(str(target), os.path.join(logdir, "stdout"))
    with pytest.raises(OSError):
        LogDestinationResolver(logdir).get_handlers()
    with pytest.raises(OSError):
        LogDestinationResolver(logdir, mode="rotate", rotate_log_size=10,
                               rotate_log_backups=1).get_handlers()
    assert target.read_bytes() == b"precious"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give files away")
def test_files_created_as_root_are_given_to_the_owner(logdir):
    nobody = pwd.getpwnam("nobody")
    owner = (nobody.pw_uid, nobody.pw_gid)
    for mode in ("standard", "rotate"):
        resolver = LogDestinationResolver(logdir, mode=mode, rotate_log_size=4, rotate_log_backups=1,
                                          owner=owner)
        stdout, stderr, _ = resolver.get_handlers()
        stdout.write(b"12345678")
        stdout.close()
        stderr.close()
        for name in ("stdout", "stderr"):
            st = os.stat(os.path.join(logdir, name))
            assert (st.st_uid, st.st_gid) == owner, (mode, name)


def feed(w, chunks):
    def run():
        for chunk in chunks:
            os.write(w, chunk)
        os.close(w)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("read_size", [1, 5, 1 << 16])
def test_pump_moves_every_byte_until_both_pipes_close(read_size):
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    out, err = MemoryHandler(), MemoryHandler()
    payload = [bytes([i % 251]) * (i * 37 % 4096 + 1) for i in range(200)]
    threads = [feed(out_w, payload), feed(err_w, [b"e" * 100000])]
    pump({out_r: out, err_r: err}, read_size)
    for thread in threads:
        thread.join()
    assert bytes(out.data) == b"".join(payload)
    assert bytes(err.data) == b"e" * 100000
    for fd in (out_r, err_r):  # pump closed its ends
        with pytest.raises(OSError):
            os.fstat(fd)


def test_pump_into_rotating_files(logdir):
    r, w = os.pipe()
    handler = RotatingFileHandler(os.path.join(logdir, "stdout"), 1000, 3)
    thread = feed(w, [b"x" * 777] * 10)
    pump({r: handler})
    thread.join()
    handler.close()
    sizes = {name: os.path.getsize(os.path.join(logdir, name)) for name in os.listdir(logdir)}
    assert sizes == {"stdout": 770, "stdout.1": 1000, "stdout.2": 1000, "stdout.3": 1000}


def test_pump_drops_what_cannot_be_written_and_keeps_draining():
    r, w = os.pipe()
    full = FdHandler(os.open("/dev/full", os.O_WRONLY))
    thread = feed(w, [b"y" * 4096] * 50)  # more than a pipe holds: pump must keep reading
    pump({r: full})
    thread.join()
    assert full.dropped == 4096 * 50
    assert full.error is not None
    full.close()
