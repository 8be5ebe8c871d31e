"""Build step that pyproject.toml cannot express: copy the top-level `migrations/` and `fhir_profiles/`
into the wheel as package data under `app/_data/` (app/data_files.py finds them there), so that a plain
`pip install` gives a `safeflag` that can migrate, validate and serve. Everything else is in pyproject.toml.
"""

from __future__ import annotations

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


setup(cmdclass={"build_py": BuildWithData})
