from tests.harness.mesos import agent_factory, mesos_agent  # noqa: F401
