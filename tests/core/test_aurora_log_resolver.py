"""Aurora's LogDestinationResolver calling form (a TaskPath) and its handler objects (spec §6.4, §12)."""

import io
import os
import subprocess
import sys

import pytest

from thermos.common import safe_fs
from thermos.common.path import TaskPath
from thermos.core.process import (
    LogDestinationResolver,
    LoggerDestination,
    LoggerMode,
    StreamHandler,
    TeeHandler,
)
from thermos.core.process_logging import RotatingFileHandler, pump


def make_taskpath(td):
    """Aurora's test helper: the run's logs go to <td>/.logs/process/0 (not created beforehand)."""
    return TaskPath(root=str(td), task_id="task", process="process", run=0,
                    log_dir=os.path.join(str(td), ".logs"))


def log_path(taskpath, name):
    return taskpath.with_filename(name).getpath("process_logdir")


def read(path):
    with open(path, "rb") as fp:
        return fp.read()


@pytest.fixture
def console(tmp_path, monkeypatch):
    """A function that replaces sys.stdout and sys.stderr by real files, as Aurora's tests did.

    Called from the test body: pytest's capture sets sys.stdout again after the fixtures ran.
    """
    opened = []

    def replace():
        for name in ("stdout", "stderr"):
            opened.append(open(tmp_path / ("sys_" + name), "w+"))  # noqa: SIM115 - closed below
            monkeypatch.setattr(sys, name, opened[-1])
        return tmp_path / "sys_stdout", tmp_path / "sys_stderr"

    yield replace
    for fp in opened:
        fp.close()


def test_aurora_names_import_from_core_process():
    import thermos.core.process as process

    for name in ("LogDestinationResolver", "LoggerDestination", "LoggerMode", "StreamHandler", "TeeHandler"):
        assert name in process.__all__ and hasattr(process, name)


def test_tee_class_writes_to_both_stream_objects():
    fileout, stdout = io.StringIO(), io.StringIO()
    tee = TeeHandler(fileout, stdout)
    tee.write("TEST")
    assert fileout.getvalue() == stdout.getvalue() == "TEST"
    tee.write("SECOND")
    assert fileout.getvalue() == stdout.getvalue() == "TESTSECOND"


def test_resolver_none_output_is_stream_handlers_and_no_files(tmp_path):
    taskpath = make_taskpath(tmp_path)
    stdout, stderr, handlers_are_files = LogDestinationResolver(
        taskpath, destination=LoggerDestination.NONE).get_handlers()
    assert type(stdout) is StreamHandler and type(stderr) is StreamHandler
    assert not handlers_are_files
    stdout.write(b"discarded\n")
    stdout.close()
    stderr.close()
    assert not os.path.exists(log_path(taskpath, "stdout"))


def test_resolver_console_output_is_sys_stdout_and_stderr(tmp_path):
    taskpath = make_taskpath(tmp_path)
    stdout, stderr, handlers_are_files = LogDestinationResolver(
        taskpath, destination=LoggerDestination.CONSOLE).get_handlers()
    assert stdout is sys.stdout and stderr is sys.stderr
    assert handlers_are_files
    assert not os.path.exists(log_path(taskpath, "stdout"))


def test_resolver_file_output_is_file_objects_that_append(tmp_path):
    taskpath = make_taskpath(tmp_path)
    stdout, stderr, handlers_are_files = LogDestinationResolver(
        taskpath, destination=LoggerDestination.FILE).get_handlers()
    assert isinstance(stdout, io.BufferedWriter) and isinstance(stderr, io.BufferedWriter)
    assert handlers_are_files
    assert os.path.exists(log_path(taskpath, "stdout")) and os.path.exists(log_path(taskpath, "stderr"))
    # Handed to a real process as its stdout and stderr, as Aurora's coordinator did.
    subprocess.run(["/bin/bash", "-c", "echo hello world; echo oops >&2"], stdout=stdout, stderr=stderr,
                   check=True)
    stdout.close()
    stderr.close()
    stdout, stderr, _ = LogDestinationResolver(taskpath).get_handlers()  # a second run appends
    stdout.write(b"again\n")
    stdout.close()
    stderr.close()
    assert read(log_path(taskpath, "stdout")) == b"hello world\nagain\n"
    assert read(log_path(taskpath, "stderr")) == b"oops\n"


@pytest.mark.parametrize("mode", [LoggerMode.STANDARD, LoggerMode.ROTATE])
def test_resolver_both_output_tees_the_console_and_the_files(tmp_path, console, mode):
    out_file, err_file = console()
    taskpath = make_taskpath(tmp_path)
    stdout, stderr, handlers_are_files = LogDestinationResolver(
        taskpath, destination=LoggerDestination.BOTH, mode=mode, rotate_log_size=70,
        rotate_log_backups=2).get_handlers()
    assert type(stdout) is TeeHandler and type(stderr) is TeeHandler
    assert not handlers_are_files
    assert os.path.exists(log_path(taskpath, "stdout")) and os.path.exists(log_path(taskpath, "stderr"))
    if mode == LoggerMode.ROTATE:
        assert isinstance(stdout.second, RotatingFileHandler)
    # Pumped from a real process's pipes, as Aurora's PipedSubprocessExecutor did.
    proc = subprocess.Popen(["/bin/bash", "-c", "echo hello world; echo hello stderr >&2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pump({os.dup(proc.stdout.fileno()): stdout, os.dup(proc.stderr.fileno()): stderr})
    assert proc.wait(timeout=30) == 0
    proc.stdout.close()
    proc.stderr.close()
    stdout.close()
    stderr.close()
    assert read(log_path(taskpath, "stdout")) == b"hello world\n"
    assert read(log_path(taskpath, "stderr")) == b"hello stderr\n"
    assert read(out_file) == b"hello world\n" and read(err_file) == b"hello stderr\n"


def test_rotation_through_the_aurora_form(tmp_path):
    taskpath = make_taskpath(tmp_path)
    stdout, stderr, handlers_are_files = LogDestinationResolver(
        taskpath, LoggerDestination.FILE, LoggerMode.ROTATE, 70, 2).get_handlers()
    assert not handlers_are_files
    for _ in range(21):
        stdout.write(b"stdout\n")
    stdout.close()
    stderr.close()
    assert read(log_path(taskpath, "stdout")) == b"stdout\n"
    assert read(log_path(taskpath, "stdout.1")) == read(log_path(taskpath, "stdout.2")) == b"stdout\n" * 10
    assert not os.path.exists(log_path(taskpath, "stdout.3"))


def test_the_aurora_form_keeps_the_symlink_refusal(tmp_path):
    taskpath = make_taskpath(tmp_path)
    os.makedirs(taskpath.getpath("process_logdir"))
    target = tmp_path / "elsewhere"
    target.write_bytes(b"precious\n")
    os.symlink(target, log_path(taskpath, "stdout"))
    with pytest.raises(safe_fs.UnsafePath, match="symlink"):
        LogDestinationResolver(taskpath).get_handlers()
    assert read(target) == b"precious\n"


def test_stream_handler_writes_bytes_to_a_text_stream_and_closes_only_when_asked(tmp_path):
    with open(tmp_path / "text", "w") as text:
        handler = StreamHandler(text)
        handler.write(b"bytes\n")
        handler.write("text\n")
        handler.close()
        assert not text.closed
    assert read(tmp_path / "text") == b"bytes\ntext\n"
    owned = open(tmp_path / "owned", "wb")  # noqa: SIM115 - the handler closes it
    StreamHandler(owned, close=True).close()
    assert owned.closed
