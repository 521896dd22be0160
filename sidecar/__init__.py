"""claude-sidecar: an observability and cost-control sidecar for the Anthropic Claude API."""

__version__ = "0.1.0"
