"""ScaleLM's PyTorch side.

The core needs torch only; integrations (transformers, Lightning) are imported only where those libraries
are installed.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["TORCH_MIN", "Monitor", "torch_version_ok"]
TORCH_MIN = (2, 6)


def torch_version_ok(version: str) -> bool:
    """True when a torch version string (``2.13.0+cpu``, ``2.6.0a0``) is at least ``TORCH_MIN``."""
    parts = version.split("+")[0].split(".")
    try:
        major, minor = int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or "0")
    except (IndexError, ValueError):
        return False
    return (major, minor) >= TORCH_MIN


def __getattr__(name: str) -> object:
    # Monitor imports torch: loaded on first use, so `import scalelm` stays cheap (the coordinator's probe).
    if name == "Monitor":
        from .monitor import Monitor

        return Monitor
    raise AttributeError(name)
