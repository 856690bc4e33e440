"""The option combinations the template suite bakes, as data.

Adding an option means adding its values here (see CONTRIBUTING.md). Each
combination is baked once per session and every check runs on that bake.
"""

from __future__ import annotations

from typing import Any

COMBINATIONS: list[dict[str, Any]] = [
    {"orm": "sqlalchemy", "use_redis": False},
    {"orm": "sqlalchemy", "use_redis": True},
    {"orm": "tortoise", "use_redis": False},
    {"orm": "tortoise", "use_redis": True},
]


def combination_id(combination: dict[str, Any]) -> str:
    """Readable test id, e.g. ``orm:tortoise-use_redis:true``."""
    return "-".join(f"{key}:{str(value).lower()}" for key, value in combination.items())


IDS = [combination_id(combination) for combination in COMBINATIONS]
