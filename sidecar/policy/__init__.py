"""The decide stage: every per-call decision (budgets, prompt cache, tool latency) behind one interface."""
