"""A throwaway local user for tests that really switch users (root only).

`role_user` creates a system user with no home and no password (``useradd --system``), yields its
passwd entry and deletes it afterwards (only if the fixture created it). It skips the test unless
it runs as root with ``useradd`` available. `traversable_dir` is a root-owned 0755 directory under
/tmp: pytest's own tmp_path sits below a 0700 directory the user could not enter.

    from tests.harness.users import role_user, traversable_dir  # noqa: F401  (in a conftest.py)
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

ROLE_USER = "thermos-e2e-role"


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a user and switch to it")
    if shutil.which("useradd") is None:
        pytest.skip("needs useradd")


@pytest.fixture(scope="module")
def role_user() -> Iterator[pwd.struct_passwd]:
    """A system user named `ROLE_USER`, removed at the end of the module."""
    _require_root()
    created = False
    try:
        pwd.getpwnam(ROLE_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/bin/sh", ROLE_USER],
                       check=True)
        created = True
    yield pwd.getpwnam(ROLE_USER)
    if created:
        subprocess.run(["userdel", ROLE_USER], check=False)


@pytest.fixture
def traversable_dir() -> Iterator[str]:
    """A fresh root-owned 0755 directory under /tmp, removed afterwards."""
    path = tempfile.mkdtemp(prefix="thermos-e2e-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
