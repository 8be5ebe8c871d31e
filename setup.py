"""Build steps that pyproject.toml cannot express: copy the top-level `migrations/` and `fhir_profiles/`
into the wheel as package data under `app/_data/` (app/data_files.py finds them there), and put the
pinned NHS.UK frontend files the web app serves under `app/web/static/vendor/` (app/web/assets.py), so
that a plain `pip install` gives a `safeflag` that can migrate, validate and serve its pages. Everything
else is in pyproject.toml.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

FOLDERS = ("migrations", "fhir_profiles")  # app/data_files.py FOLDERS
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc")


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's folders in place
        root = Path(__file__).resolve().parent
        for name in FOLDERS:
            target = Path(self.build_lib) / "app" / "_data" / name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(root / name, target, ignore=SKIP)
        web_assets(root, Path(self.build_lib) / "app" / "web" / "static" / "vendor")


def web_assets(root: Path, target: Path) -> None:
    """The pinned NHS.UK frontend files: copied from the checkout when `make web-assets` fetched them,
    else fetched and checked here. app/web/assets.py is loaded by its path (it needs the standard library
    only; the build environment has none of SafeFlag's dependencies)."""
    spec = importlib.util.spec_from_file_location("safeflag_web_assets", root / "app" / "web" / "assets.py")
    assert spec is not None and spec.loader is not None
    assets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(assets)
    if assets.installed(assets.VENDOR):
        shutil.copytree(assets.VENDOR, target, dirs_exist_ok=True)
    else:
        assets.fetch(dest=target)


setup(cmdclass={"build_py": BuildWithData})
