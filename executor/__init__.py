"""The Mesos executor (thermos_executor); mapped to thermos.executor."""
