"""Grafana dashboards for claude-sidecar, built with grafana-foundation-sdk (see ``generate.py``)."""
