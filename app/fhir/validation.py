"""Validation of incoming resources, in the order a client would want to be told:

1. shape: a JSON object whose `resourceType` is the type in the URL, an `id` that is a valid FHIR id
   (and equals the URL id on update);
2. ele-1: no empty objects, arrays or strings and no nulls (https://hl7.org/fhir/R4/json.html#null);
3. structure and cardinality (fhir.resources R4B models);
4. required bindings that the models skip (`bindings.py`) and the per-1 invariant on Periods;
5. business rules (422): NHS number check digit on every identifier with the NHS number system.

1-4 answer 400, 5 answers 422 (contract section 2).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from app.errors import BadRequest, Issue, Unprocessable
from app.fhir import nhs_number
from app.fhir.bindings import DATATYPE_REQUIRED, REQUIRED
from app.fhir.resources import structure_errors
from app.fhir.search.dates import parse_range

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def check_id(res_id: str, expression: str = "id") -> None:
    if not ID_RE.match(res_id):
        raise BadRequest(
            f"'{res_id}' is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .)",
            msg_id="SF-0102",
            expression=expression,
        )


def _empties(node: Any, path: str) -> Iterator[str]:
    if node is None:
        yield path
    elif isinstance(node, dict):
        if not node:
            yield path
        for key, value in node.items():
            yield from _empties(value, f"{path}.{key}")
    elif isinstance(node, list):
        if not node:
            yield path
        for i, value in enumerate(node):
            # null is allowed inside primitive-extension arrays (`_given`), nowhere else
            if value is None and path.rsplit(".", 1)[-1].startswith("_"):
                continue
            yield from _empties(value, f"{path}[{i}]")
    elif isinstance(node, str) and node.strip() == "":
        yield path


def _walk_paths(node: Any, path: tuple[str, ...], expr: str) -> Iterator[tuple[str, Any]]:
    if not path:
        yield expr, node
        return
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk_paths(item, path, f"{expr}[{i}]")
        return
    if isinstance(node, dict) and path[0] in node:
        yield from _walk_paths(node[path[0]], path[1:], f"{expr}.{path[0]}")


def _datatype_nodes(node: Any, expr: str) -> Iterator[tuple[str, str, Any]]:
    """(element name, expression, value) for every element anywhere in the tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("contained", "resource"):
                continue
            sub = f"{expr}.{key}"
            if isinstance(value, list):
                for i, item in enumerate(value):
                    yield key, f"{sub}[{i}]", item
                    yield from _datatype_nodes(item, f"{sub}[{i}]")
            else:
                yield key, sub, value
                yield from _datatype_nodes(value, sub)


def binding_issues(resource_type: str, content: dict[str, Any]) -> list[Issue]:
    issues: list[Issue] = []
    for path, allowed in REQUIRED.get(resource_type, {}).items():
        for expr, value in _walk_paths(content, path, resource_type):
            if isinstance(value, str) and value not in allowed:
                issues.append(
                    Issue(
                        "code-invalid",
                        f"'{value}' is not in the required value set for {resource_type}.{'.'.join(path)} "
                        f"({', '.join(sorted(allowed))})",
                        expression=(expr,),
                        msg_id="SF-0104",
                    )
                )
    for name, expr, value in _datatype_nodes(content, resource_type):
        rules = DATATYPE_REQUIRED.get(name)
        if not rules or not isinstance(value, dict):
            continue
        for element, allowed in rules.items():
            code = value.get(element)
            if isinstance(code, str) and code not in allowed:
                issues.append(
                    Issue(
                        "code-invalid",
                        f"'{code}' is not in the required value set for {name}.{element} "
                        f"({', '.join(sorted(allowed))})",
                        expression=(f"{expr}.{element}",),
                        msg_id="SF-0104",
                    )
                )
    for name, expr, value in _datatype_nodes(content, resource_type):
        if isinstance(value, dict) and isinstance(value.get("start"), str) and isinstance(value.get("end"), str):
            start, end = parse_range(value["start"]), parse_range(value["end"])
            if start and end and start[0] >= end[1]:
                issues.append(
                    Issue(
                        "invariant",
                        "per-1: If present, start SHALL have a lower value than end",
                        expression=(expr,),
                        msg_id="SF-0105",
                    )
                )
    return issues


def nhs_number_issues(resource_type: str, content: dict[str, Any]) -> list[Issue]:
    issues = []
    for name, expr, value in _datatype_nodes(content, resource_type):
        if (
            isinstance(value, dict)
            and value.get("system") == nhs_number.NHS_NUMBER_SYSTEM
            and isinstance(value.get("value"), str)
            and not nhs_number.is_valid(value["value"])
        ):
            issues.append(
                Issue(
                    "business-rule",
                    f"'{value['value']}' is not a valid NHS number (ten digits with a Modulus 11 check digit)",
                    expression=(f"{expr}.value",),
                    msg_id="SF-0201",
                )
            )
    return issues


def validate_resource(
    resource_type: str, content: Any, *, url_id: str | None = None, require_id: bool = False
) -> list[Issue]:
    """Raise BadRequest/Unprocessable for an invalid resource; return warnings (none yet)."""
    if not isinstance(content, dict):
        raise BadRequest("The body must be a JSON object holding a FHIR resource", msg_id="SF-0100")
    body_type = content.get("resourceType")
    if body_type != resource_type:
        raise BadRequest(
            f"resourceType '{body_type}' does not match the URL type '{resource_type}'",
            msg_id="SF-0101",
            expression="resourceType",
        )
    res_id = content.get("id")
    if res_id is not None:
        if not isinstance(res_id, str):
            raise BadRequest("id must be a string", msg_id="SF-0102", expression=f"{resource_type}.id")
        check_id(res_id, f"{resource_type}.id")
    if url_id is not None:
        if res_id is None and require_id:
            raise BadRequest(
                "The resource must carry an id equal to the URL id on update",
                msg_id="SF-0103",
                expression=f"{resource_type}.id",
            )
        if res_id is not None and res_id != url_id:
            raise BadRequest(
                f"Resource id '{res_id}' does not match the URL id '{url_id}'",
                msg_id="SF-0103",
                expression=f"{resource_type}.id",
            )
    empties = list(_empties(content, resource_type))
    if empties:
        raise BadRequest(
            issues=[
                Issue(
                    "invalid",
                    "ele-1: elements must have a value or children (no nulls, empty objects, arrays or strings)",
                    expression=(e,),
                    msg_id="SF-0106",
                )
                for e in empties
            ]
        )
    errors = structure_errors(resource_type, content)
    if errors:
        issues = []
        for expr, etype, msg in errors:
            code = {"missing": "required", "extra_forbidden": "structure"}.get(etype, "value")
            text = {"missing": "Missing required element", "extra_forbidden": "Unknown element"}.get(etype, msg)
            issues.append(Issue(code, f"{text} at {expr}", expression=(expr,), msg_id="SF-0107"))
        raise BadRequest(issues=issues)
    bad = binding_issues(resource_type, content)
    if bad:
        raise BadRequest(issues=bad)
    rules = nhs_number_issues(resource_type, content)
    if rules:
        raise Unprocessable(issues=rules)
    return []
