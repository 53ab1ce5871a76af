"""Read-only views over checkpoints and process trees."""
