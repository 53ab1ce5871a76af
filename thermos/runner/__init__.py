"""The thermos_runner command."""
