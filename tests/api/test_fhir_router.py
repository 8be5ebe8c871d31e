"""The FHIR router's table (app/api/router.py, app/api/fhir_routes.py): which row answers which path,
the precedence rules (a literal beats `${name}`, which beats a parameter, compared from the left; the
order of the rows never matters), what it answers when no row fits, and that the CapabilityStatement's
operations come from the table's rows."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import Request
from starlette.responses import Response

from app.api.fhir_routes import fhir_routes
from app.api.router import Entry, IdPath, RouteTable, split
from app.context import AppContext
from app.main import create_app
from tests.conftest import BASE_URL
from tests.support.fhir_data import outcome

TABLE = fhir_routes()


def routed(method: str, path: str, table: RouteTable = TABLE) -> tuple[str, dict[str, str]] | None:
    hit = table.match(method, split(path))
    return (hit[0].name, hit[1]) if hit else None


@pytest.mark.parametrize(("method", "path", "name", "params"), [
    # literal segments beat parameters
    ("GET", "/fhir/Binary/b1", "read_binary", {"res_id": "b1"}),
    ("GET", "/fhir/Flag/f1", "read", {"resource_type": "Flag", "res_id": "f1"}),
    ("GET", "/fhir/Flag/_history", "history_type", {"resource_type": "Flag"}),
    ("GET", "/fhir/_history", "history_system", {}),
    ("GET", "/fhir/metadata", "capabilities", {}),
    ("GET", "/fhir/.well-known/smart-configuration", "smart_configuration", {}),
    ("POST", "/fhir/Flag/_search", "search_type_post", {"resource_type": "Flag"}),
    ("GET", "/fhir/StructureDefinition", "search_structuredefinition", {}),
    ("DELETE", "/fhir/CodeSystem", "delete_type_codesystem", {}),
    ("GET", "/fhir/Flag/f1/_history/2", "vread", {"resource_type": "Flag", "res_id": "f1", "version_id": "2"}),
    # compared from the left: the first segment that differs decides
    ("GET", "/fhir/StructureDefinition/_history", "read_structuredefinition", {"res_id": "_history"}),
    # operations at the system, type and instance levels, in the same table
    ("GET", "/fhir/$governance-report", "governance_report", {}),
    ("POST", "/fhir/Flag/$validate", "validate", {"resource_type": "Flag"}),
    ("POST", "/fhir/Flag/f1/$validate", "validate_instance", {"resource_type": "Flag", "res_id": "f1"}),
    ("GET", "/fhir/DocumentReference/$qa-queue", "qa_queue", {}),
    ("GET", "/fhir/Subscription/$status", "subscription_status_type", {}),
    ("GET", "/fhir/Subscription/s1/$status", "subscription_status", {"res_id": "s1"}),
    ("GET", "/fhir/Patient/p1/$safeguarding-summary", "safeguarding_summary", {"res_id": "p1"}),
    # `$name` beats a parameter (it is never an id or a type), and loses to every literal
    ("GET", "/fhir/$export", "unknown_system_operation", {"name": "export"}),
    ("GET", "/fhir/Flag/$qa-queue", "unknown_type_operation", {"resource_type": "Flag", "name": "qa-queue"}),
    ("GET", "/fhir/Patient/$safeguarding-summary", "unknown_type_operation",
     {"resource_type": "Patient", "name": "safeguarding-summary"}),
    ("GET", "/fhir/Flag/f1/$safeguarding-summary", "unknown_instance_operation",
     {"resource_type": "Flag", "res_id": "f1", "name": "safeguarding-summary"}),
    ("GET", "/fhir/Flag/$validate", "unknown_type_operation", {"resource_type": "Flag", "name": "validate"}),
    # a lone `$` is no operation name
    ("GET", "/fhir/Flag/$", "read", {"resource_type": "Flag", "res_id": "$"}),
    # per method: PUT has no operation rows, so `$x` lands on update (whose id check answers it)
    ("PUT", "/fhir/Flag/$x", "update", {"resource_type": "Flag", "res_id": "$x"}),
    ("POST", "/fhir", "transaction", {}),
])
def test_the_most_literal_row_answers(method: str, path: str, name: str, params: dict[str, str]) -> None:
    assert routed(method, path) == (name, params)


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/fhir"), ("POST", "/fhir/Flag/f1"), ("GET", "/fhir/Flag/f1/_history/1/x"), ("GET", "/fhir/"),
    ("GET", "/fhir/Flag/"), ("GET", "/fhir//Flag"), ("HEAD", "/fhir/Flag"), ("PUT", "/fhir/Binary/b1/$status"),
])
def test_paths_no_row_fits(method: str, path: str) -> None:
    assert routed(method, path) is None


def test_the_methods_a_path_allows() -> None:
    assert TABLE.allowed(split("/fhir/Flag/f1")) == ["GET", "PUT", "PATCH", "DELETE"]
    assert TABLE.allowed(split("/fhir")) == ["POST"]
    assert TABLE.allowed(split("/fhir/StructureDefinition/x")) == ["GET", "PUT", "PATCH", "DELETE"]
    assert TABLE.allowed(split("/fhir/Flag/f1/_history/1/x")) == []
    assert TABLE.operation_methods(split("/fhir/Flag/$validate")) == ["POST"]
    assert TABLE.operation_methods(split("/fhir/Flag/$qa-queue")) == []


def test_the_order_of_the_rows_does_not_matter() -> None:
    backwards = RouteTable(reversed(TABLE.entries))
    paths = [("GET", "/fhir/Binary/b1"), ("GET", "/fhir/Flag/$x"), ("GET", "/fhir/Flag/_history"),
             ("GET", "/fhir/Patient/p1/$safeguarding-summary"), ("POST", "/fhir/Flag/$validate"),
             ("GET", "/fhir/StructureDefinition/_history"), ("GET", "/fhir/$governance-report")]
    assert [routed(m, p, backwards) for m, p in paths] == [routed(m, p) for m, p in paths]


async def _endpoint(request: Request, res_id: IdPath) -> Response:
    return Response()


async def _other(request: Request) -> Response:
    return Response()


def test_two_rows_of_one_shape_are_refused() -> None:
    with pytest.raises(ValueError, match=r"GET /fhir/\{t\}/\{id\} has the shape of /fhir/\{resource_type\}/\{res_id\}"):
        RouteTable([Entry("GET", "/{resource_type}/{res_id}", _endpoint, "one"),
                    Entry("GET", "/{t}/{id}", _other, "two")])
    # the same shape with another method, or another literal, is a different row
    table = RouteTable([Entry("GET", "/{resource_type}/{res_id}", _endpoint, "read"),
                        Entry("PUT", "/{resource_type}/{res_id}", _endpoint, "update"),
                        Entry("GET", "/Binary/{res_id}", _endpoint, "binary")])
    assert [e.name for e in table.entries] == ["read", "update", "binary"]


def test_only_parameters_annotated_as_ids_are_checked() -> None:
    by_name = {e.name: e for e in TABLE.entries}
    assert by_name["read"].ids == ("res_id",)
    assert by_name["vread"].ids == ("res_id",)  # the version is not an id
    assert by_name["read_binary"].ids == ("res_id",)
    # the conformance reads and the unknown-operation rows take any segment, as they always have
    assert by_name["read_structuredefinition"].ids == ()
    assert by_name["unknown_instance_operation"].ids == ()


def test_the_operations_are_the_tables_rows() -> None:
    backport = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-"
    ours = "https://fhir.safeflag.example/OperationDefinition/"
    assert TABLE.operations() == {
        "governance-report": (ours + "governance-report", ()),
        "validate": ("http://hl7.org/fhir/OperationDefinition/Resource-validate", None),
        "qa-queue": (ours + "qa-queue", ("DocumentReference",)),
        "status": (backport + "status", ("Subscription",)),
        "get-ws-binding-token": (backport + "get-ws-binding-token", ("Subscription",)),
        "safeguarding-summary": (ours + "Patient-safeguarding-summary", ("Patient",)),
        "events": (backport + "events", ("Subscription",)),
    }


# -- over HTTP, on both databases --------------------------------------------------------------------------

@pytest.fixture
async def anonymous(clean_ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx=clean_ctx)),
                                 base_url=BASE_URL) as c:
        yield c


async def test_no_row_is_answered_before_the_token(anonymous: httpx.AsyncClient) -> None:
    """404 and 405 say nothing about any record, so they need no token (as for every unknown path)."""
    r = await anonymous.get("/fhir/Flag/f1/_history/1/x")
    assert (r.status_code, r.json()) == (404, outcome(
        "not-found", "SF-H404: No such endpoint: GET /fhir/Flag/f1/_history/1/x"))
    r = await anonymous.post("/fhir/Flag/f1")
    assert (r.status_code, r.headers["allow"], r.json()) == (405, "GET, PUT, PATCH, DELETE", outcome(
        "not-supported", "SF-H405: Method not allowed: POST /fhir/Flag/f1 (allowed: GET, PUT, PATCH, DELETE)"))
    r = await anonymous.head("/fhir/Flag")
    assert (r.status_code, r.headers["allow"]) == (405, "GET, POST, PUT, PATCH, DELETE")
    # a row that fits asks for the token first
    r = await anonymous.get("/fhir/Flag/f1")
    assert r.status_code == 401


async def test_a_trailing_slash_redirects_where_the_path_without_it_is_served(anonymous: httpx.AsyncClient) -> None:
    r = await anonymous.get("/fhir/Flag/?status=active")
    assert (r.status_code, r.headers["location"]) == (307, f"{BASE_URL}/fhir/Flag?status=active")
    r = await anonymous.post("/fhir/")
    assert (r.status_code, r.headers["location"]) == (307, f"{BASE_URL}/fhir")
    r = await anonymous.get("/fhir/Flag/f1/_history/1/x/")
    assert r.status_code == 404


async def test_precedence_over_http(client: httpx.AsyncClient) -> None:
    # `$name` in the id's place is an operation not served there, on a literal type's row too
    r = await client.get("/fhir/Binary/$everything")
    assert (r.status_code, r.json()) == (400, outcome(
        "not-supported", "SF-0260: Operation $everything is not supported on Binary"))
    r = await client.delete("/fhir/Flag/$everything")
    assert (r.status_code, r.json()) == (400, outcome(
        "not-supported", "SF-0260: Operation $everything is not supported on Flag"))
    # an operation served at this path with another method: 405 naming it
    r = await client.get("/fhir/Flag/$validate")
    assert (r.status_code, r.headers["allow"], r.json()) == (405, "POST", outcome(
        "not-supported", "SF-0261: $validate is not invoked with GET here (allowed: POST)"))
    # `_history` is not an id: the type's history, not a read
    r = await client.get("/fhir/Flag/_history")
    assert (r.status_code, r.json()["type"]) == (200, "history")
    # a bad id on an id row: 400 from the id pattern
    r = await client.get("/fhir/Flag/bad*id")
    assert (r.status_code, r.json()) == (400, outcome(
        "invalid", "SF-0102: 'bad*id' is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .)", ["id"]))
