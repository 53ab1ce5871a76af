"""Replacing a file so that readers see the old content or the new, never half of it."""

from __future__ import annotations

import contextlib
import os
import tempfile


def write_atomically(filename: str, data: bytes, durable: bool = True) -> None:
    """Write `data` to a temporary file beside `filename`, then rename it over `filename`.

    `durable` fsyncs before the rename (task files); a cache that is rebuilt when lost skips it.
    """
    directory = os.path.dirname(filename) or "."
    os.makedirs(directory, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(filename))
    try:
        with os.fdopen(fd, "wb") as fp:
            fp.write(data)
            if durable:
                fp.flush()
                os.fsync(fp.fileno())
        os.replace(temporary, filename)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
