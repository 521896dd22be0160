"""``claude-sidecar demo``: the sidecar, the fake upstream and synthetic agents and fleet members."""
