"""Test support shipped with the package: synthetic checkpoints and the runner harness."""
