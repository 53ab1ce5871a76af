"""ProcessMuxer: tails every live process's coordinator checkpoint for new records.

Each coordinator appends its run's records to `coordinator.<process>`, across all runs. The muxer
keeps one read handle per registered process, fast-forwarded past records at or below the
process's watermark (earlier runs), and returns whatever has been appended since the last look.
"""

from __future__ import annotations

import errno
import logging
import os
from typing import IO

from thermos.common.path import TaskPath
from thermos.common.recordio import RecordIO, ThriftRecordReader
from thermos.gen.thermos.ttypes import ProcessStatus, RunnerCkpt

log = logging.getLogger(__name__)


class ProcessMuxer:
    class Error(Exception):
        pass

    class ProcessExists(Error):
        pass

    class ProcessNotFound(Error):
        pass

    def __init__(self, pathspec: TaskPath) -> None:
        self._pathspec = pathspec
        self._watermarks: dict[str, int] = {}
        self._readers: dict[str, ThriftRecordReader[RunnerCkpt]] = {}
        self.dir_fd: int | None = None  # the checkpoint directory, while the runner holds it

    def register(self, process_name: str, watermark: int = 0) -> None:
        if process_name in self._watermarks:
            raise self.ProcessExists("Process %s is already registered" % process_name)
        self._watermarks[process_name] = watermark

    def unregister(self, process_name: str) -> None:
        if process_name not in self._watermarks:
            raise self.ProcessNotFound("No process %s is registered" % process_name)
        del self._watermarks[process_name]
        reader = self._readers.pop(process_name, None)
        if reader is not None:
            reader.close()

    @property
    def registered(self) -> list[str]:
        return list(self._watermarks)

    def checkpoint_path(self, process_name: str) -> str:
        return self._pathspec.given(process=process_name).getpath("process_checkpoint")

    def _open(self, process_name: str) -> IO[bytes]:
        """Relative to the runner's checkpoint directory when it has one: a replaced directory or
        a planted symlink cannot feed the runner another file."""
        path = self.checkpoint_path(process_name)
        if self.dir_fd is None:
            return open(path, "rb")
        fd = os.open(os.path.basename(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=self.dir_fd)
        return os.fdopen(fd, "rb")

    def _bind(self, process_name: str) -> ThriftRecordReader[RunnerCkpt] | None:
        reader = self._readers.get(process_name)
        if reader is not None:
            return reader
        try:
            fp: IO[bytes] = self._open(process_name)
        except OSError as err:
            if err.errno == errno.ENOENT:
                return None
            raise
        reader = ThriftRecordReader(fp, RunnerCkpt)
        watermark = self._watermarks[process_name]
        while True:
            position = fp.tell()
            record = reader.try_read()
            if record is None:
                break
            if record.process_status is not None and record.process_status.seq > watermark:
                fp.seek(position)
                break
        self._readers[process_name] = reader
        return reader

    def has_data(self, process_name: str) -> bool:
        reader = self._bind(process_name)
        if reader is None:
            return False
        position = reader.fp.tell()
        try:
            return reader.try_read() is not None
        finally:
            reader.fp.seek(position)

    def select(self) -> list[ProcessStatus]:
        """Every record appended since the last call, across all registered processes."""
        updates: list[ProcessStatus] = []
        for name in list(self._watermarks):
            reader = self._bind(name)
            if reader is None:
                continue
            fp = reader.fp
            position = fp.tell()
            size = os.fstat(fp.fileno()).st_size
            if position > size:
                log.error("Truncated checkpoint for %s: position %d beyond size %d", name, position, size)
                continue
            if position == size:
                continue
            while True:
                try:
                    record = reader.try_read()
                except RecordIO.Error as err:
                    log.error("Corrupt coordinator checkpoint for %s: %s", name, err)
                    break
                if record is None:
                    break
                if record.process_status is not None:
                    updates.append(record.process_status)
        return updates
