"""The web console (SPEC §16): static pages under ``/ui/`` that read the documented admin API."""
