"""RecordIO framing of Thrift records: the byte format of every Thermos checkpoint.

A stream is a plain concatenation of frames: a 4-byte unsigned big-endian length, then that many
bytes of Thrift binary-protocol payload (spec thermos.md §2.1). It is byte-compatible with Aurora.

Where Aurora loses data, this module deliberately does not:

* A torn final record (short header, short body, or an undecodable last frame, as a crash in the
  middle of an append leaves behind) is invisible: iteration stops cleanly after the valid prefix.
  Aurora raised, and its callers then dropped the whole state.
* Corruption *inside* the stream (an impossible length, or an undecodable payload followed by more
  data) raises a typed error naming the file and the byte offset, so an operator can act on it.
* A failed append (ENOSPC, EIO) raises `RecordIO.WriteError` after cutting the file back to its last
  whole frame. Aurora returned False and carried on unrecorded; a half frame left in the middle of
  the file would also poison every later append.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable, Iterator
from typing import IO, Any, Generic, TypeVar

from thrift.protocol import TBinaryProtocol
from thrift.transport import TTransport

try:
    from thrift.protocol import fastbinary
except ImportError:  # pragma: no cover - the C extension ships with the pinned thrift wheel
    fastbinary = None

T = TypeVar("T")

HEADER = struct.Struct(">L")
HEADER_SIZE = HEADER.size
MAXIMUM_RECORD_SIZE = 64 * 1024 * 1024


class RecordIO:
    """Namespace for the error types, kept where Aurora's callers expect them."""

    class Error(Exception):
        """Base of every RecordIO failure."""

    class PrematureEndOfStream(Error):
        """The stream ends inside a frame: the writer is mid-append or crashed during one."""

    class RecordSizeExceeded(Error):
        """A frame header announces more than MAXIMUM_RECORD_SIZE bytes."""

    class CorruptRecord(Error):
        """A whole frame whose payload does not decode, with more data after it."""

    class InvalidTypeException(Error):
        """A file handle opened in a mode this reader or writer cannot use."""

    class WriteError(Error):
        """An append failed; the file was cut back to its last whole frame where possible."""

        def __init__(self, message: str, errno: int | None = None) -> None:
            super().__init__(message)
            self.errno = errno


def _where(fp: Any, offset: int) -> str:
    name = fp if isinstance(fp, str) else getattr(fp, "name", "<stream>")
    return "%s at byte %d" % (name, offset)


class ThriftCodec(Generic[T]):
    """Thrift binary encoding of one struct type, through the C accelerator when present."""

    def __init__(self, thrift_base: type[T]) -> None:
        self._base = thrift_base
        self._spec = [thrift_base, thrift_base.thrift_spec]  # type: ignore[attr-defined]
        # One protocol object, re-pointed at each payload: building a protocol per record costs
        # more than decoding the record. So a codec must not be shared between threads.
        self._proto = TBinaryProtocol.TBinaryProtocolAccelerated(TTransport.TMemoryBuffer(b""))

    def encode(self, obj: T) -> bytes:
        if fastbinary is not None:
            return fastbinary.encode_binary(obj, self._spec)
        buf = TTransport.TMemoryBuffer()
        obj.write(TBinaryProtocol.TBinaryProtocol(buf))  # type: ignore[attr-defined]
        return buf.getvalue()

    def decode(self, payload: bytes) -> T:
        """Decode one payload; any failure becomes a plain ValueError for the caller to place."""
        obj = self._base()
        try:
            if fastbinary is not None:
                self._proto.trans = TTransport.TMemoryBuffer(payload)
                fastbinary.decode_binary(obj, self._proto, self._spec)
            else:
                obj.read(TBinaryProtocol.TBinaryProtocol(TTransport.TMemoryBuffer(payload)))  # type: ignore
        except Exception as err:  # noqa: BLE001 - thrift raises many unrelated types on garbage
            raise ValueError("undecodable %s payload (%s: %s)" % (
                self._base.__name__, type(err).__name__, err)) from None
        return obj


    @property
    def base(self) -> type[T]:
        return self._base

    @property
    def spec(self) -> list[Any]:
        return self._spec

    def frame_decoder(self, data: bytes) -> Callable[[int, int], T]:
        """A decoder of payloads lying at [start, end) of `data` (the pure-Python fallback)."""
        return lambda start, end: self.decode(data[start:end])


def encode_frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


def _check_readable(fp: IO[bytes]) -> None:
    mode = getattr(fp, "mode", "rb")
    if isinstance(mode, str) and "r" not in mode and "+" not in mode:
        raise RecordIO.InvalidTypeException("%s is opened write-only (mode %r)" % (
            getattr(fp, "name", "<stream>"), mode))


def _check_writable(fp: IO[bytes]) -> None:
    mode = getattr(fp, "mode", "wb")
    if isinstance(mode, str) and not any(c in mode for c in "wa+"):
        raise RecordIO.InvalidTypeException("%s is opened read-only (mode %r)" % (
            getattr(fp, "name", "<stream>"), mode))


def _rest_is_zero(fp: IO[bytes], start: int) -> bool:
    """True if the file holds only NUL bytes from `start` on (a crash can leave such a tail)."""
    here = fp.tell()
    try:
        fp.seek(start)
        while True:
            chunk = fp.read(1 << 16)
            if not chunk:
                return True
            if chunk.count(0) != len(chunk):
                return False
    finally:
        fp.seek(here)


class ThriftRecordReader(Generic[T]):
    """Reads `thrift_base` records from a RecordIO stream.

    `read()` and `try_read()` move this reader's own position (tailing a live file); iterating
    re-reads the whole file from offset 0 through a duplicate descriptor and does not move it.
    """

    def __init__(self, fp: IO[bytes], thrift_base: type[T]) -> None:
        # Aurora's Python 2 scripts open checkpoints in text mode ('r'); read the bytes beneath.
        if isinstance(fp, io.TextIOBase) and hasattr(fp, "buffer"):
            fp = fp.buffer
        _check_readable(fp)
        self._fp = fp
        self._codec: ThriftCodec[T] = ThriftCodec(thrift_base)

    @property
    def fp(self) -> IO[bytes]:
        return self._fp

    def read(self) -> T | None:
        """Read the next record; None at a clean end of stream.

        Raises PrematureEndOfStream inside a frame; the position has moved either way.
        """
        fp = self._fp
        start = fp.tell()
        header = fp.read(HEADER_SIZE)
        if not header:
            fp.seek(start)  # clears EOF so a later append becomes visible
            return None
        if len(header) < HEADER_SIZE:
            raise RecordIO.PrematureEndOfStream("short frame header in %s" % _where(fp, start))
        (length,) = HEADER.unpack(header)
        if length > MAXIMUM_RECORD_SIZE:
            raise RecordIO.RecordSizeExceeded("frame of %d bytes in %s exceeds the %d byte limit" % (
                length, _where(fp, start), MAXIMUM_RECORD_SIZE))
        payload = fp.read(length)
        if len(payload) < length:
            raise RecordIO.PrematureEndOfStream("short frame body in %s" % _where(fp, start))
        try:
            return self._codec.decode(payload)
        except ValueError as err:
            end = fp.tell()
            if fp.read(1) and not _rest_is_zero(fp, end):
                raise RecordIO.CorruptRecord("%s in %s" % (err, _where(fp, start))) from None
            raise RecordIO.PrematureEndOfStream("%s in the last frame of %s" % (
                err, _where(fp, start))) from None

    def try_read(self) -> T | None:
        """Like read(), but a half-written tail rewinds and yields None, to be retried later."""
        start = self._fp.tell()
        try:
            return self.read()
        except RecordIO.PrematureEndOfStream:
            self._fp.seek(start)
            return None

    def __iter__(self) -> Iterator[T]:
        fd = os.dup(self._fp.fileno())
        with os.fdopen(fd, "rb") as fp:
            yield from iter_records(fp, self._codec, getattr(self._fp, "name", "<stream>"))

    def close(self) -> None:
        self._fp.close()


def trim_torn_tail(fd: int, thrift_base: type[T]) -> int:
    """Cut a half-written last frame off a checkpoint whose lock the caller holds; bytes removed.

    A writer SIGKILLed in the middle of an append leaves a torn tail, which readers ignore. But
    the next writer would append after it, turning it into corruption in the middle of the file
    that hides every later record, so whoever takes the lock trims it first. Damage inside the
    file is left alone for readers to report.
    """
    size = os.fstat(fd).st_size
    good = 0
    with os.fdopen(os.dup(fd), "rb") as fp:
        fp.seek(0)
        reader = ThriftRecordReader(fp, thrift_base)
        while True:
            try:
                if reader.read() is None:
                    return 0
            except RecordIO.PrematureEndOfStream:
                break
            except RecordIO.Error:
                return 0
            good = fp.tell()
    os.ftruncate(fd, good)
    return size - good


def iter_records(fp: IO[bytes], codec: ThriftCodec[T], name: str | None = None) -> Iterator[T]:
    """Yield every whole record of `fp` from offset 0; a torn tail ends the iteration silently.

    The file is read in one go and decoded in place, with thrift's C decoder called straight from
    this loop: checkpoints are small next to RAM, and a replay is mostly this loop.
    """
    where = name if name is not None else getattr(fp, "name", "<stream>")
    fp.seek(0)
    data = fp.read()
    size = len(data)
    offset = 0
    unpack = HEADER.unpack_from
    if fastbinary is not None:
        buf = TTransport.TMemoryBuffer(data)
        proto = TBinaryProtocol.TBinaryProtocolAccelerated(buf)
        stream = buf.cstringio_buf
        base, spec, decode_binary = codec.base, codec.spec, fastbinary.decode_binary
    else:
        decode = codec.frame_decoder(data)
    while offset < size:
        if offset + HEADER_SIZE > size:
            return
        (length,) = unpack(data, offset)
        if length > MAXIMUM_RECORD_SIZE:
            if data.count(0, offset) == size - offset:
                return
            raise RecordIO.RecordSizeExceeded("frame of %d bytes in %s exceeds the %d byte limit" % (
                length, _where(where, offset), MAXIMUM_RECORD_SIZE))
        end = offset + HEADER_SIZE + length
        if end > size:
            return
        try:
            if fastbinary is not None:
                stream.seek(offset + HEADER_SIZE)
                record = base()
                try:
                    decode_binary(record, proto, spec)
                except Exception as err:  # noqa: BLE001 - thrift raises many unrelated types on garbage
                    raise ValueError("undecodable %s payload (%s: %s)" % (
                        base.__name__, type(err).__name__, err)) from None
                if stream.tell() != end:
                    raise ValueError("%s payload does not fill its frame" % base.__name__)
            else:
                record = decode(offset + HEADER_SIZE, end)
        except ValueError as err:
            if end == size or data.count(0, offset) == size - offset:
                return
            raise RecordIO.CorruptRecord("%s in %s" % (err, _where(where, offset))) from None
        yield record
        offset = end


class ThriftRecordWriter(Generic[T]):
    """Appends Thrift records to a RecordIO stream; `set_sync(True)` makes each append durable."""

    def __init__(self, fp: IO[bytes]) -> None:
        _check_writable(fp)
        self._fp = fp
        self._sync = False
        self._codecs: dict[type, ThriftCodec[Any]] = {}

    @property
    def fp(self) -> IO[bytes]:
        return self._fp

    def set_sync(self, value: bool) -> None:
        self._sync = bool(value)

    def _codec(self, obj: T) -> ThriftCodec[T]:
        codec = self._codecs.get(type(obj))
        if codec is None:
            codec = self._codecs[type(obj)] = ThriftCodec(type(obj))
        return codec

    def write(self, obj: T, fsync: bool = True) -> bool:
        """Append one record. Returns True (Aurora's callers test it); failures raise WriteError.

        In sync mode the frame goes straight to the file and is fsynced; `fsync=False` keeps the
        direct, whole-frame append (visible to readers at once, cut back on failure) but leaves
        durability to the next fsync, for records that are durable elsewhere already.
        """
        frame = encode_frame(self._codec(obj).encode(obj))
        fp = self._fp
        if not self._sync:
            try:
                fp.write(frame)
            except OSError as err:
                raise RecordIO.WriteError("cannot append to %s: %s" % (
                    getattr(fp, "name", "<stream>"), err.strerror or err), err.errno) from None
            return True
        fd = fp.fileno()
        try:
            fp.flush()
            start = os.fstat(fd).st_size
        except OSError as err:
            raise RecordIO.WriteError("cannot append to %s: %s" % (
                getattr(fp, "name", "<stream>"), err.strerror or err), err.errno) from None
        try:
            view = memoryview(frame)
            while view:
                view = view[os.write(fd, view):]
            if fsync:
                os.fsync(fd)
        except OSError as err:
            self._cut_back(fd, start)
            raise RecordIO.WriteError("cannot append to %s: %s" % (
                getattr(fp, "name", "<stream>"), err.strerror or err), err.errno) from None
        return True

    @staticmethod
    def _cut_back(fd: int, size: int) -> None:
        """Drop a partial frame so that later appends stay readable; best effort."""
        try:
            os.ftruncate(fd, size)
        except OSError:
            pass

    def flush(self) -> None:
        self._fp.flush()

    def close(self) -> None:
        try:
            self._fp.flush()
        finally:
            self._fp.close()


class RecordWriter:
    """Convenience for one-off appends, as Aurora's tools do."""

    @staticmethod
    def append(filename: str, obj: Any, sync: bool = True) -> None:
        with open(filename, "ab") as fp:
            writer: ThriftRecordWriter[Any] = ThriftRecordWriter(fp)
            writer.set_sync(sync)
            writer.write(obj)
