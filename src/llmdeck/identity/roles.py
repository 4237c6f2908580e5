"""Per-project roles, from least to most trusted, and what each may do."""

from __future__ import annotations

from llmdeck.core.errors import InvalidRequest, PermissionDenied

ROLES = ("viewer", "reviewer", "builder", "admin")
"""viewer reads; reviewer also scores and labels; builder also changes project resources and
calls models; admin also manages members and keys."""


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidRequest(
            f"Unknown role {role!r}; choose one of: {', '.join(ROLES)}.", param="role"
        )
    return role


def at_least(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


def require(role: str, needed: str, action: str) -> None:
    if not at_least(role, needed):
        raise PermissionDenied(f"Your role ({role}) cannot {action}; it needs {needed} or above.")
