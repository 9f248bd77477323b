"""The "Get config" page's domain pieces: client apps per platform with import links and guides, and QR codes."""

from app.connect.clients import (
    CLIENTS,
    PLATFORM_GUIDES,
    PLATFORMS,
    ClientApp,
    Platform,
    Step,
    clients_for,
    detect_platform,
    get_client,
    get_platform,
    guide_steps,
)
from app.connect.qr import qr_svg

__all__ = [
    "CLIENTS",
    "PLATFORMS",
    "PLATFORM_GUIDES",
    "ClientApp",
    "Platform",
    "Step",
    "clients_for",
    "detect_platform",
    "get_client",
    "get_platform",
    "guide_steps",
    "qr_svg",
]
