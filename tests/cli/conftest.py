import pytest


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A root of tasks really run by thermos_runner (see tests/cli/live.py), per test module."""
    from tests.cli.live import build

    root = build(tmp_path_factory.mktemp("live"))
    try:
        yield root
    finally:
        root.close()
