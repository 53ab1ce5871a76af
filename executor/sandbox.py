"""The task's sandbox directory (spec §1.9): plain, Docker, or inside a Mesos filesystem image.

A plain sandbox is `$MESOS_DIRECTORY/sandbox`, owned by the user the task runs as (the job's role,
`--execute-as-user`, or nobody's change with `--nosetuid`) and mode 0700. A Docker task's executor runs
inside the container, where `$MESOS_SANDBOX` is the mount of `$MESOS_DIRECTORY`. A filesystem-image task
runs in the rootfs `$MESOS_DIRECTORY/taskfs`, where the sandbox is bind-mounted at the mount point.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence

log = logging.getLogger(__name__)


class SandboxError(Exception):
    """Creating the sandbox failed; str() is the one-line reason."""


class DirectorySandbox:
    """`<mesos_directory>/sandbox`, chowned to `user` (when given) and chmod 0700."""

    def __init__(self, mesos_directory: str, user: str | None = None) -> None:
        self.mesos_directory = mesos_directory
        self.root = os.path.join(mesos_directory, "sandbox")
        self.user = user

    @property
    def container_root(self) -> str:
        """The sandbox as the task's processes see it."""
        return self.root

    @property
    def chrooted(self) -> bool:
        return False

    def exists(self) -> bool:
        return os.path.isdir(self.root)

    def create(self) -> None:
        uid = gid = None
        if self.user:
            try:
                entry = pwd.getpwnam(self.user)
            except KeyError:
                raise SandboxError("Could not create sandbox because user does not exist: %s" % self.user) \
                    from None
            uid, gid = entry.pw_uid, entry.pw_gid
            try:
                grp.getgrgid(gid)
            except KeyError:
                raise SandboxError("Could not create sandbox because group %d of user %s does not exist"
                                   % (gid, self.user)) from None
        try:
            os.makedirs(self.root, exist_ok=True)
            if uid is not None and gid is not None:
                os.chown(self.mesos_directory, uid, gid)
                os.chown(self.root, uid, gid)
            os.chmod(self.root, 0o700)
        except OSError as e:
            raise SandboxError("%s: %s" % (e.filename or self.root, e.strerror)) from None

    def destroy(self) -> None:
        try:
            shutil.rmtree(self.root)
        except OSError as e:
            raise SandboxError("Could not remove sandbox %s: %s" % (self.root, e.strerror)) from None


class DockerDirectorySandbox(DirectorySandbox):
    """In a Docker container `$MESOS_SANDBOX` (the mount point) stands for `$MESOS_DIRECTORY` (the
    host path the runner's checkpoint records): link one to the other so both resolve."""

    def __init__(self, mesos_directory: str, mesos_sandbox: str) -> None:
        super().__init__(mesos_directory, user=None)
        self.mesos_sandbox = mesos_sandbox

    def create(self) -> None:
        try:
            if os.path.abspath(self.mesos_sandbox) != os.path.abspath(self.mesos_directory):
                os.makedirs(os.path.dirname(self.mesos_directory), exist_ok=True)
                if not os.path.lexists(self.mesos_directory):
                    os.symlink(self.mesos_sandbox, self.mesos_directory)
            os.chmod(self.mesos_sandbox, 0o755)
        except OSError as e:
            raise SandboxError("%s: %s" % (e.filename or self.mesos_sandbox, e.strerror)) from None
        super().create()


class FileSystemImageSandbox(DirectorySandbox):
    """A sandbox for a task with its own root filesystem at `$MESOS_DIRECTORY/taskfs`.

    The role's user and group are created inside the image (unless `no_create_user`), the executor's
    container volumes and the sandbox are bind-mounted into it, and the host's resolv.conf, hosts
    and hostname are copied in. Needs root (mount, useradd -R).
    """

    def __init__(self, mesos_directory: str, user: str | None, sandbox_mount_point: str,
                 volumes: Sequence[str] = (), no_create_user: bool = False) -> None:
        super().__init__(mesos_directory, user)
        self.rootfs = os.path.join(mesos_directory, "taskfs")
        self.sandbox_mount_point = sandbox_mount_point
        self.volumes = [v for v in volumes if v.strip("/") != "taskfs"]
        self.no_create_user = no_create_user

    @property
    def container_root(self) -> str:
        return self.sandbox_mount_point

    def _run(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SandboxError("%s failed: %s" % (cmd[0], e)) from None

    def _create_user(self) -> None:
        if not self.user or self.no_create_user:
            return
        try:
            entry = pwd.getpwnam(self.user)
            group = grp.getgrgid(entry.pw_gid).gr_name
        except KeyError:
            raise SandboxError("Could not create sandbox because user does not exist: %s"
                               % self.user) from None
        done = self._run("groupadd", "-R", self.rootfs, "-g", str(entry.pw_gid), group)
        if done.returncode in (4, 9):  # exists: it must be the same group
            check = self._run("chroot", self.rootfs, "getent", "group", group)
            fields = check.stdout.strip().split(":")
            if check.returncode != 0 or fields[:1] != [group] or fields[2:3] != [str(entry.pw_gid)]:
                raise SandboxError("Group %s exists in the image with another gid" % group)
        elif done.returncode != 0:
            raise SandboxError("groupadd %s in the image failed: %s" % (group, done.stderr.strip()))
        done = self._run("useradd", "-R", self.rootfs, "-u", str(entry.pw_uid), "-g", str(entry.pw_gid),
                         self.user)
        if done.returncode in (4, 9):
            check = self._run("chroot", self.rootfs, "id", self.user)
            want = "uid=%d(%s) gid=%d(%s) groups=" % (entry.pw_uid, self.user, entry.pw_gid, group)
            if check.returncode != 0 or not check.stdout.startswith(want):
                raise SandboxError("User %s exists in the image with another uid or gid" % self.user)
        elif done.returncode != 0:
            raise SandboxError("useradd %s in the image failed: %s" % (self.user, done.stderr.strip()))

    def _mount(self, source: str, target: str) -> None:
        try:
            if os.path.isfile(source):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                open(target, "a").close()
            else:
                os.makedirs(target, exist_ok=True)
        except OSError as e:
            raise SandboxError("Could not create mount point %s: %s" % (target, e.strerror)) from None
        done = self._run("mount", "-n", "--rbind", source, target)
        if done.returncode != 0:
            raise SandboxError("Could not mount %s at %s: %s" % (source, target, done.stderr.strip()))

    def create(self) -> None:
        if not os.path.isdir(self.rootfs):
            raise SandboxError("The task's filesystem image is missing: %s" % self.rootfs)
        self._create_user()
        super().create()
        for volume in self.volumes:
            self._mount(volume, os.path.join(self.rootfs, volume.lstrip("/")))
        self._mount(self.root, os.path.join(self.rootfs, self.sandbox_mount_point.lstrip("/")))
        for name in ("resolv.conf", "hosts", "hostname"):
            source = os.path.join("/etc", name)
            if os.path.exists(source):
                try:
                    os.makedirs(os.path.join(self.rootfs, "etc"), exist_ok=True)
                    shutil.copy(source, os.path.join(self.rootfs, "etc", name))
                except OSError as e:
                    raise SandboxError("Could not copy %s into the image: %s"
                                       % (source, e.strerror)) from None
