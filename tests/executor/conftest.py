from tests.harness.mesos import agent_factory, mesos_agent  # noqa: F401
from tests.harness.users import role_user, traversable_dir  # noqa: F401
from tests.harness.zookeeper import zookeeper  # noqa: F401
