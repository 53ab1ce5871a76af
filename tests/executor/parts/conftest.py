from tests.harness.zookeeper import zookeeper  # noqa: F401  (the real ZooKeeper server fixture)
