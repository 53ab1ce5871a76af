"""Thermos: a crash-safe process supervisor and Mesos executor stack compatible with Aurora's."""
