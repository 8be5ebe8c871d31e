"""`python -m app.openapi_yaml` (`make openapi`): openapi.yaml as it should be committed, the OpenAPI
description the app serves at /openapi.json (app/openapi.py) printed as YAML with sorted keys, so the
file only changes when the API does; tests/test_openapi.py fails when the committed file is stale.

It builds the whole app (app/main.py) to describe it, so it sits at the top with the composition, apart
from app/openapi.py, which the app itself installs.
"""

from __future__ import annotations

from typing import Any


def render(schema: dict[str, Any]) -> str:
    """Stable YAML: sorted keys, no `&id001` aliases (repeated objects written out in full, easier to read
    and diff), wide lines (a long description does not re-wrap). PyYAML is imported here only: serving
    the API does not need it."""
    import yaml  # type: ignore[import-untyped]

    class NoAliases(yaml.SafeDumper):  # type: ignore[misc]
        def ignore_aliases(self, data: Any) -> bool:
            return True

    text: str = yaml.dump(schema, Dumper=NoAliases, sort_keys=True, allow_unicode=True, width=120,
                          default_flow_style=False)
    return text


def document() -> str:
    """openapi.yaml as it should be committed (the schema does not depend on the settings)."""
    from app.config import Settings
    from app.main import create_app

    return render(create_app(Settings(_env_file=None)).openapi())  # type: ignore[call-arg]


def main() -> None:
    print(document(), end="")


if __name__ == "__main__":
    main()
