"""A current axe-core for the accessibility checks: the npm package pinned by version and sha512 integrity,
fetched once into var/cache/ (the axe-core that axe-selenium-python bundles on Python 3.11 is years old
and flags what current WCAG rules allow, such as `role=banner` on the NHS.UK header)."""

from __future__ import annotations

import io
import tarfile
import urllib.request
from pathlib import Path

from app.web.assets import check_integrity

VERSION = "4.14.1"
INTEGRITY = "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ=="
TARBALL = f"https://registry.npmjs.org/axe-core/-/axe-core-{VERSION}.tgz"
CACHE = Path(__file__).resolve().parents[2] / "var" / "cache" / f"axe-core-{VERSION}.min.js"


def axe_script() -> Path:
    if not CACHE.exists():
        with urllib.request.urlopen(TARBALL, timeout=60) as response:
            data = response.read()
        check_integrity(data, INTEGRITY)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            member = tar.extractfile("package/axe.min.js")
            assert member is not None
            CACHE.parent.mkdir(parents=True, exist_ok=True)
            partial = CACHE.with_suffix(".part")
            partial.write_bytes(member.read())
            partial.replace(CACHE)
    return CACHE
