"""A local simulator of the four shop platforms, for tests and the demo.

One Starlette app speaks WeChat Shop, Douyin Shop, Kuaishou Shop and Youzan on
their real paths and envelopes, checks signatures and tokens with the
connectors' own ``protocol.py``, keeps per-shop products, stock and orders,
pushes signed events to the hub, and injects faults (see docs/sandbox.md).
"""

from __future__ import annotations

from connectors.sandbox.app import create_app
from connectors.sandbox.config import (
    PLATFORMS,
    ApiBudget,
    FaultConfig,
    FaultKind,
    SandboxConfig,
)
from connectors.sandbox.control_client import SandboxControl, SandboxControlError
from connectors.sandbox.crowd import CrowdConfig, CrowdShop
from connectors.sandbox.server import SandboxServer, ServerThread
from connectors.sandbox.state import SandboxState

__all__ = [
    "PLATFORMS",
    "ApiBudget",
    "CrowdConfig",
    "CrowdShop",
    "FaultConfig",
    "FaultKind",
    "SandboxConfig",
    "SandboxControl",
    "SandboxControlError",
    "SandboxServer",
    "SandboxState",
    "ServerThread",
    "create_app",
]
