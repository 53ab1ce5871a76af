"""Side effects: coordinators, the muxer, the runner helper and the TaskRunner."""
