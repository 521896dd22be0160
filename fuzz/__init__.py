"""Fuzzing harness for the sans-I/O code on the byte path (see ``fuzz/README.md``)."""
