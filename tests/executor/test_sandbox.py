"""Sandbox creation (executor/sandbox.py) on the real file system."""

import os
import pwd
import stat

import pytest
from thermos.executor.sandbox import DirectorySandbox, DockerDirectorySandbox, SandboxError


@pytest.mark.root
def test_directory_sandbox_is_owned_by_the_user_and_private(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    nobody = pwd.getpwnam("nobody")
    run = tmp_path / "run"
    run.mkdir()
    sandbox = DirectorySandbox(str(run), user="nobody")
    sandbox.create()
    for path in (run, run / "sandbox"):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert stat.S_IMODE(os.stat(run / "sandbox").st_mode) == 0o700
    assert sandbox.root == sandbox.container_root == str(run / "sandbox")


def test_unknown_user_is_one_line(tmp_path):
    sandbox = DirectorySandbox(str(tmp_path), user="no-such-user-xyz")
    with pytest.raises(SandboxError) as err:
        sandbox.create()
    assert str(err.value) == "Could not create sandbox because user does not exist: no-such-user-xyz"
    assert not os.path.exists(sandbox.root)


def test_no_user_leaves_ownership_alone(tmp_path):
    sandbox = DirectorySandbox(str(tmp_path), user=None)
    sandbox.create()
    assert os.stat(sandbox.root).st_uid == os.geteuid()


def test_docker_sandbox_links_the_host_directory_to_the_mount(tmp_path):
    mount = tmp_path / "mnt" / "mesos" / "sandbox"
    mount.mkdir(parents=True)
    host_dir = tmp_path / "var" / "lib" / "mesos" / "run"
    sandbox = DockerDirectorySandbox(str(host_dir), str(mount))
    sandbox.create()
    assert os.path.realpath(host_dir) == str(mount)
    assert os.path.isdir(mount / "sandbox")
    assert stat.S_IMODE(os.stat(mount).st_mode) == 0o755
