"""Snapshots of a tree (contents, modes, owners, link targets) to prove a GC left it untouched."""

from __future__ import annotations

import hashlib
import os
import stat


def snapshot(top: str) -> dict[str, tuple]:
    """Every entry under `top` (itself included), never following a symlink."""
    result: dict[str, tuple] = {}
    for directory, dirs, files in os.walk(top, followlinks=False):
        for name in [".", *dirs, *files]:
            path = os.path.normpath(os.path.join(directory, name))
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                detail: object = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as fp:
                    detail = hashlib.sha256(fp.read()).hexdigest()
            else:
                detail = None
            result[os.path.relpath(path, top)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                                  st.st_uid, st.st_gid, st.st_size, detail)
    return result


def make_outside(path: str) -> str:
    """A root-only tree that a GC must never touch: files, a subdirectory, private modes."""
    os.makedirs(os.path.join(path, "sub"))
    for name, data in (("secret", b"root only\n"), ("sub/keys", b"ssh-ed25519 AAAA root@host\n")):
        with open(os.path.join(path, name), "wb") as fp:
            fp.write(data)
        os.chmod(os.path.join(path, name), 0o600)
    os.chmod(path, 0o700)
    return path
