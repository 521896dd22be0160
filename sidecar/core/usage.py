"""Token usage of one Messages call, in Anthropic's own meaning.

``input_tokens`` is *uncached* input only; cache reads and cache writes are separate buckets.
The total input the model saw is ``input_tokens + cache_read + cache_creation`` (see ``total_input``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    # The TTL split of ``cache_creation_input_tokens`` when the API sent one (``usage.cache_creation``);
    # ``None`` means absent, and then every written token is priced as a 5-minute write.
    cache_creation_5m: int | None = None
    cache_creation_1h: int | None = None
    web_search_requests: int = 0
    web_fetch_requests: int = 0
    service_tier: str | None = None
    inference_geo: str | None = None
    speed: str | None = None

    @property
    def total_input(self) -> int:
        """Input as the GenAI conventions count it: uncached + cache read + cache write."""
        return self.input_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens

    def write_buckets(self) -> tuple[int, int]:
        """``(5m, 1h)`` cache-write tokens; ``cache_creation_input_tokens`` is authoritative.

        The 1h part comes from the split when present; the rest is 5m. Without a split, all is 5m.
        """
        total = self.cache_creation_input_tokens
        one_hour = min(self.cache_creation_1h or 0, total)
        return total - one_hour, one_hour
