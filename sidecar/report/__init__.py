"""``claude-sidecar report`` and ``check``: arguments, store reads, formatting and baselines."""
