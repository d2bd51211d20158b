"""magray: a local memory engine for AI agents.

Heavy parts (numpy, the native extension) load on first use, so ``import magray`` and
``magray --help`` stay instant.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "kernels"]

if TYPE_CHECKING:
    from magray import kernels


def __getattr__(name: str) -> Any:
    if name == "kernels":
        return import_module("magray.kernels")
    raise AttributeError(f"module 'magray' has no attribute {name!r}")
