import pytest


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """Tasks really run by thermos_runner (see tests/observer/live.py), per test module."""
    from tests.observer.live import build

    root = build(tmp_path_factory.mktemp("observed"))
    try:
        yield root
    finally:
        root.close()


@pytest.fixture(scope="module")
def service(live, tmp_path_factory):
    """thermos_observer running over `live` on 127.0.0.1 (`service.url`, `.get`, `.json`)."""
    from tests.observer.live import ObserverService

    server = ObserverService(live.root, str(tmp_path_factory.mktemp("observer-state") / "state"))
    try:
        yield server
    finally:
        server.close()
