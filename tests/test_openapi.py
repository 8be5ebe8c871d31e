"""The committed openapi.yaml is the app's own schema (regenerate with `make openapi`), and the schema
says what the API really answers: FHIR JSON bodies, OperationOutcome errors, resource types as enums."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml

from app.config import Settings
from app.fhir.search.definitions import SUPPORTED_TYPES
from app.main import create_app
from app.openapi_yaml import document

COMMITTED = Path(__file__).resolve().parents[1] / "openapi.yaml"


def test_committed_openapi_yaml_is_up_to_date() -> None:
    expected = document()
    committed = COMMITTED.read_text(encoding="utf-8") if COMMITTED.exists() else ""
    if committed != expected:
        diff = "".join(list(difflib.unified_diff(committed.splitlines(True), expected.splitlines(True),
                                                 "openapi.yaml (committed)", "openapi.yaml (app)"))[:60])
        raise AssertionError(f"openapi.yaml is out of date: run `make openapi` and commit it.\n{diff}")


def test_generation_is_deterministic_and_served() -> None:
    assert document() == document()
    app = create_app(Settings(_env_file=None))  # type: ignore[call-arg]
    assert yaml.safe_load(document()) == app.openapi()


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in schema["paths"].items() for method, op in item.items()]


def test_schema_describes_fhir_answers() -> None:
    schema = yaml.safe_load(document())
    fhir_ops = [(p, m, op) for p, m, op in _operations(schema) if p == "/fhir" or p.startswith("/fhir/")]
    assert len(fhir_ops) > 15
    for path, method, op in fhir_ops:
        where = f"{method.upper()} {path}"
        assert "422" not in op["responses"] or "HTTPValidationError" not in str(op["responses"]["422"]), where
        assert op["responses"]["4XX"]["content"] == {
            "application/fhir+json": {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}}, where
        for status, response in op["responses"].items():
            assert set(response.get("content", {})) <= {"application/fhir+json"}, (where, status)
        for param in op.get("parameters", []):
            if param["name"] == "resource_type":
                assert param["schema"]["enum"] == list(SUPPORTED_TYPES), where
        body = op.get("requestBody", {}).get("content", {})
        for media, content in body.items():
            if media in ("application/fhir+json", "application/merge-patch+json"):
                assert content["schema"]["type"] == "object", where
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    validate = schema["paths"]["/fhir/{resource_type}/$validate"]["post"]
    assert validate["responses"]["200"]["content"]["application/fhir+json"]["schema"] == {
        "$ref": "#/components/schemas/Resource"}


def test_schema_says_what_fastapi_cannot_see() -> None:
    """Bearer authentication everywhere but the open endpoints, the server, each type's search
    parameters, the real statuses of conditional create, update-as-create and never-written types, and
    `month` required on $governance-report."""
    from app.fhir.search.definitions import params_for
    from app.security.policy import NEVER_DELETED, SERVER_WRITTEN

    schema = yaml.safe_load(document())
    assert schema["components"]["securitySchemes"]["bearer"]["type"] == "http"
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["security"] == [{"bearer": []}]
    assert [s["url"] for s in schema["servers"]] == ["http://127.0.0.1:8080"]
    open_ops = sorted((m.upper(), p) for p, m, op in _operations(schema) if op.get("security") == [])
    assert open_ops == [("GET", "/auth/jwks"), ("GET", "/fhir/.well-known/smart-configuration"),
                        ("GET", "/fhir/metadata"), ("GET", "/healthz"), ("GET", "/readyz"), ("POST", "/auth/token")]
    assert all("security" not in op for p, m, op in _operations(schema) if (m.upper(), p) not in open_ops)

    paths = schema["paths"]
    create = paths["/fhir/{resource_type}"]["post"]["responses"]
    assert {"200", "201", "405"} <= set(create) and "conditional create" in create["200"]["description"]
    update = paths["/fhir/{resource_type}/{res_id}"]["put"]["responses"]
    assert {"200", "201", "405"} <= set(update) and "update-as-create" in update["201"]["description"]
    assert update["405"]["description"] == f"{', '.join(sorted(SERVER_WRITTEN))}: written by the server only (SF-0406)"
    deleted = paths["/fhir/{resource_type}/{res_id}"]["delete"]["responses"]["405"]
    assert deleted["description"] == f"{', '.join(sorted(NEVER_DELETED))}: never deleted (SF-0405)"
    assert deleted["content"] == {"application/fhir+json": {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}}

    for path, method in (("/fhir/{resource_type}", "get"), ("/fhir/{resource_type}/_search", "post")):
        by_type = paths[path][method]["x-search-parameters"]
        assert set(by_type) == set(SUPPORTED_TYPES)
        for rtype, listed in by_type.items():
            assert [p["name"] for p in listed] == ["_id", "_lastUpdated", *sorted(params_for(rtype))], rtype
    flag = {p["name"]: p["type"] for p in paths["/fhir/{resource_type}"]["get"]["x-search-parameters"]["Flag"]}
    assert (flag["patient"], flag["category"], flag["date"]) == ("reference", "token", "date")

    month = [p for p in paths["/fhir/$governance-report"]["get"]["parameters"] if p["name"] == "month"]
    assert [p["required"] for p in month] == [True]
