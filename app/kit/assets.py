"""Static files under fingerprinted names (`app.3f9c21ab.css`): a changed file gets a new address, so every
address can be cached for a year and a deploy is still seen at once. Each file is read and gzip-compressed once
per process; the whole set is a few dozen kilobytes."""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent.parent.parent / "webapp" / "static"
# A fingerprinted name: the original stem, a dot, eight hex digits, the original suffix.
_FINGERPRINTED = re.compile(r"^(?P<stem>.+)\.(?P<digest>[0-9a-f]{8})(?P<suffix>\.[a-z0-9]+)$")
# Text types worth compressing; images in PNG or ICO are compressed already.
_COMPRESSIBLE = ("text/", "application/javascript", "image/svg+xml", "application/json")


@dataclass(frozen=True, slots=True)
class Asset:
    name: str  # the path under STATIC_DIR, e.g. "app.css" or "guides/mobile-import.svg"
    body: bytes
    gzipped: bytes | None
    media_type: str
    digest: str  # the first 8 hex digits of the content's SHA-256

    @property
    def url(self) -> str:
        path = Path(self.name)
        return f"/static/{path.with_name(f'{path.stem}.{self.digest}{path.suffix}').as_posix()}"


@cache
def load(name: str) -> Asset | None:
    """The file `name` under STATIC_DIR, or None when there is no such file (or the name leaves the folder)."""
    path = (STATIC_DIR / name).resolve()
    if not path.is_relative_to(STATIC_DIR) or not path.is_file():
        return None
    body = path.read_bytes()
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if media_type == "text/javascript":
        media_type = "application/javascript"
    compress = media_type.startswith(_COMPRESSIBLE) and len(body) > 512
    gzipped = gzip.compress(body, compresslevel=9, mtime=0) if compress else None
    return Asset(name, body, gzipped, media_type, hashlib.sha256(body).hexdigest()[:8])


def asset_url(name: str) -> str:
    """The address of a static file for templates; a missing file is a bug, so it fails loudly."""
    found = load(name)
    if found is None:
        raise LookupError(f"no static file {name!r}")
    return found.url


def resolve(path: str) -> tuple[Asset | None, bool]:
    """The asset a request path names, and whether the name carried its current fingerprint (then it may be
    cached for good). An outdated fingerprint still answers with today's file, not cacheable for long."""
    match = _FINGERPRINTED.match(Path(path).name)
    if match:
        original = str(Path(path).with_name(match["stem"] + match["suffix"]))
        found = load(original)
        if found is not None:
            return found, found.digest == match["digest"]
    return load(path), False
