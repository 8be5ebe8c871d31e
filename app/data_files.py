"""Where the files SafeFlag runs on live: the Alembic `migrations/` and the conformance resources of
`fhir_profiles/`.

They sit at the top of the source repository, where developers edit them. A built wheel carries copies
inside the package, under `app/_data/` (setup.py's build step puts them there), so an installed
`safeflag` finds them through its own package from any working directory, with no PYTHONPATH and no
checkout. A source checkout (editable install, tests) has no `app/_data/` and reads the repository's
folders directly.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED = PACKAGE_DIR / "_data"
SOURCE_ROOT = PACKAGE_DIR.parent
# The top-level folders a wheel carries (setup.py reads this tuple too).
FOLDERS = ("migrations", "fhir_profiles")


def data_dir(name: str) -> Path:
    """The folder `name` (one of FOLDERS) as installed, else as in the source checkout."""
    if name not in FOLDERS:
        raise ValueError(f"{name!r} is not one of SafeFlag's data folders {FOLDERS}")
    bundled = BUNDLED / name
    return bundled if bundled.is_dir() else SOURCE_ROOT / name
