"""A real ZooKeeper server (Debian's `zookeeper` package) on 127.0.0.1, for announcer tests.

`ZooKeeperServer` starts ``org.apache.zookeeper.server.ZooKeeperServerMain`` with a config in a
temporary directory (a free port, ``clientPortAddress=127.0.0.1``, no admin server), waits until
it answers ``ruok`` (bounded), and stops it by its pid. The `zookeeper` fixture shares one server
per test session; tests keep apart by using their own znode paths.

    from tests.harness.zookeeper import zookeeper  # noqa: F401  (makes the fixture available)

    def test_x(zookeeper):
        client = KazooClient(hosts=zookeeper.connect_string)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

ZOOKEEPER_JAR = '/usr/share/java/zookeeper.jar'
ZOOKEEPER_CONF = '/etc/zookeeper/conf'  # log4j.properties lives there
MAIN = 'org.apache.zookeeper.server.ZooKeeperServerMain'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def available() -> str | None:
    """None if a server can be started here, else why not."""
    if shutil.which('java') is None:
        return 'java is not installed (apt-get install default-jre-headless)'
    if not os.path.exists(ZOOKEEPER_JAR):
        return '%s is missing (apt-get install zookeeper)' % ZOOKEEPER_JAR
    return None


class ZooKeeperServer:
    """One standalone server; `start()` returns once it serves clients, `stop()` ends it."""

    def __init__(self, tick_ms: int = 200) -> None:
        self.port = _free_port()
        self.connect_string = '127.0.0.1:%d' % self.port
        self.tick_ms = tick_ms
        self.root = tempfile.mkdtemp(prefix='thermos-zk-')
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> str:
        return os.path.join(self.root, 'server.log')

    def start(self, timeout: float = 60.0) -> ZooKeeperServer:
        config = os.path.join(self.root, 'zoo.cfg')
        with open(config, 'w') as fp:
            fp.write('tickTime=%d\ndataDir=%s\nclientPort=%d\nclientPortAddress=127.0.0.1\n'
                     'admin.enableServer=false\n4lw.commands.whitelist=ruok\n'
                     % (self.tick_ms, os.path.join(self.root, 'data'), self.port))
        with open(self.log_path, 'wb') as log:
            self.process = subprocess.Popen(
                ['java', '-Xmx128m', '-Dzookeeper.root.logger=INFO,CONSOLE',
                 '-Dlog4j.configuration=file:%s/log4j.properties' % ZOOKEEPER_CONF,
                 '-cp', '%s:%s' % (ZOOKEEPER_CONF, ZOOKEEPER_JAR), MAIN, config],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.ruok():
            if self.process.poll() is not None:
                raise RuntimeError('ZooKeeper exited with %s; see %s' % (
                    self.process.returncode, self.log_path))
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError('ZooKeeper did not answer within %.0f s; see %s' % (
                    timeout, self.log_path))
            time.sleep(0.1)
        return self

    def ruok(self) -> bool:
        """True when the server answers the four-letter ``ruok`` with ``imok``."""
        try:
            with socket.create_connection(('127.0.0.1', self.port), timeout=1) as sock:
                sock.sendall(b'ruok')
                return sock.recv(4) == b'imok'
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope='session')
def zookeeper() -> Iterator[ZooKeeperServer]:
    """A running ZooKeeper server shared by the session (skips when java/zookeeper are missing)."""
    reason = available()
    if reason is not None:
        pytest.skip(reason)
    server = ZooKeeperServer().start()
    try:
        yield server
    finally:
        server.stop()
