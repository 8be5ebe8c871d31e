"""The NHS.UK frontend's compiled CSS, JavaScript and images, fetched by the build (`make web-assets`).

The npm package `nhsuk-frontend` is pinned here by version and by the registry's sha512 integrity hash;
`python -m app.web.assets` downloads its tarball from the npm registry with the standard library only,
refuses it unless the hash matches, and unpacks the few files the pages use into `static/vendor/`
(ignored by git: nothing third-party is committed, and no Node is needed to build or run). The
stylesheet's `url(/assets/...)` references are pointed at where the app serves those images, and its
`@font-face` rules (the Frutiger web font from assets.nhs.uk) are left out: the pages load nothing from
another origin (the Content-Security-Policy allows none) and fall back to Arial, as NHS.UK frontend's
font stack does wherever Frutiger is unavailable.
Run again, it does nothing while the unpacked version matches the pin.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import sys
import tarfile
import urllib.request
from pathlib import Path

VERSION = "10.6.1"
INTEGRITY = "sha512-PZorqQZjZx/A26yJoskCL9z0ib6AtkAyF0o4K/RHr8zRrJyXrUOCnMbjy0VNXsGO4tfTNMwqlkwATKs4a0xayw=="
TARBALL = f"https://registry.npmjs.org/nhsuk-frontend/-/nhsuk-frontend-{VERSION}.tgz"
VENDOR = Path(__file__).parent / "static" / "vendor"
STATIC_PREFIX = "/app/static/vendor/"  # where app/web/routes.py serves VENDOR
_DIST = "package/dist/nhsuk/"
FILES = {  # tarball member (under _DIST) -> file under VENDOR
    "nhsuk-frontend.min.css": "nhsuk-frontend.min.css",
    "nhsuk-frontend.min.js": "nhsuk-frontend.min.js",
}
IMAGES = "assets/images/"
STAMP = f"{VERSION} (images under {STATIC_PREFIX}, no @font-face)"  # what was unpacked, and how
_FONT_FACE = re.compile(rb"@font-face\s*\{[^}]*\}")


class IntegrityError(RuntimeError):
    """The downloaded tarball is not the pinned one."""


def check_integrity(data: bytes, integrity: str = INTEGRITY) -> None:
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise IntegrityError(f"unsupported integrity algorithm {algorithm!r}")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise IntegrityError(f"the download's integrity sha512-{actual} is not the pinned {integrity}")


def unpack(data: bytes, dest: Path = VENDOR) -> list[Path]:
    """The pinned files of a checked tarball into `dest`; the version last, so a half-done unpack redoes."""
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.startswith(_DIST):
                continue
            name = member.name[len(_DIST):]
            if name in FILES:
                target = dest / FILES[name]
            elif name.startswith(IMAGES) and "/" not in name[len(IMAGES):]:
                target = dest / "images" / name[len(IMAGES):]
            else:
                continue
            source = tar.extractfile(member)
            assert source is not None
            content = source.read()
            if target.suffix == ".css":
                content = content.replace(b"url(/assets/images/", f"url({STATIC_PREFIX}images/".encode())
                content = _FONT_FACE.sub(b"", content)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            written.append(target)
    missing = [f for f in FILES.values() if not (dest / f).exists()]
    if missing:
        raise IntegrityError(f"nhsuk-frontend {VERSION}: the tarball has no {', '.join(missing)}")
    (dest / "VERSION").write_text(STAMP + "\n")
    return written


def installed(dest: Path = VENDOR) -> bool:
    version = dest / "VERSION"
    return version.exists() and version.read_text().strip() == STAMP


def fetch(dest: Path = VENDOR, url: str = TARBALL) -> bool:
    """Download, check and unpack unless already there; True when something was done."""
    if installed(dest):
        return False
    with urllib.request.urlopen(url, timeout=60) as response:
        data = response.read()
    check_integrity(data)
    unpack(data, dest)
    return True


def main() -> int:
    try:
        done = fetch()
    except (OSError, IntegrityError) as exc:
        print(f"cannot fetch the NHS.UK frontend {VERSION}: {exc}", file=sys.stderr)
        return 1
    print(f"NHS.UK frontend {VERSION} {'fetched into' if done else 'already in'} {VENDOR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
