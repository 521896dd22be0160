"""Label values: client-given names are capped, status codes fold into a closed set of classes."""

from __future__ import annotations

import dataclasses

from sidecar.telemetry.labels import OTHER, LabelCap, status_class
from tests.telemetry.test_recorder import make_event


def test_label_cap_admits_the_first_values_then_other() -> None:
    cap = LabelCap(2, ("default",))
    assert [cap("default"), cap("a"), cap("b"), cap("a")] == ["default", "a", OTHER, "a"]


def test_status_class() -> None:
    base = make_event(0)
    classes = [status_class(dataclasses.replace(base, status=s)) for s in (200, 429, 503, 0, -1, 600, 101)]
    assert classes == ["2xx", "4xx", "5xx", "error", "error", "error", "error"]
