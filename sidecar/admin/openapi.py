"""Print the admin API's OpenAPI document: ``python -m sidecar.admin.openapi > docs/openapi.json``.

The checked-in ``docs/openapi.json`` must equal what the sidecar serves (``tests/admin/test_openapi.py``),
so that every change to the API shows up in review.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from sidecar.admin.api import admin_api


def document() -> dict[str, Any]:
    return admin_api().openapi()


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    sys.stdout.write(render(document()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
