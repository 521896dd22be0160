"""Single flight (SPEC R-RC-3, R-RC-7): concurrent identical requests share one upstream call.

The first request for a key leads: it registers a future, looks the key up and, on a miss, calls the
upstream. Requests for the same key that arrive meanwhile wait on that future. The leader lands it with
the entry its call produced (every waiter then answers from it, a stream request with a complete stream)
or with ``None`` when its call failed or may not be kept (each waiter then makes its own call). A landed
flight stays registered until the entry is written, so a request arriving in between still finds it.
In-process only: replicas share entries through Redis, not flights.
"""

from __future__ import annotations

import asyncio

from sidecar.respcache.entry import Entry

Flight = asyncio.Future[Entry | None]


class Flights:
    def __init__(self) -> None:
        self._by_key: dict[bytes, Flight] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def lead_or_join(self, key: bytes) -> tuple[Flight, bool]:
        """The key's flight, and True when the caller leads it (it must :meth:`land` it, then
        :meth:`clear` it, whatever happens)."""
        found = self._by_key.get(key)
        if found is not None:
            return found, False
        flight: Flight = asyncio.get_running_loop().create_future()
        self._by_key[key] = flight
        return flight, True

    @staticmethod
    async def wait(flight: Flight) -> Entry | None:
        """The leader's entry (``None``: make your own call). A waiter that is cancelled (its client
        left) does not cancel the flight the others wait on."""
        return await asyncio.shield(flight)

    @staticmethod
    def land(flight: Flight, entry: Entry | None) -> None:
        if not flight.done():
            flight.set_result(entry)

    def clear(self, key: bytes, flight: Flight) -> None:
        """Forget the flight (landing it with ``None`` if the leader never did); later requests look
        the key up in the store."""
        self.land(flight, None)
        if self._by_key.get(key) is flight:
            del self._by_key[key]
