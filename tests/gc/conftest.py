import pytest

from tests.gc.workdir import WorkDir
from tests.harness.mesos import agent_factory, mesos_agent  # noqa: F401


@pytest.fixture
def workdir(tmp_path):
    wd = WorkDir(str(tmp_path / "mesos"))
    try:
        yield wd
    finally:
        wd.stop_all()
