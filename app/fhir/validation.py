"""Validation of incoming resources, in the order a client would want to be told
(https://hl7.org/fhir/R4/validation.html):

1. shape: a JSON object whose `resourceType` is the type in the URL, an `id` that is a valid FHIR id
   (and equals the URL id on update);
2. ele-1: no empty objects, arrays or strings and no nulls (https://hl7.org/fhir/R4/json.html#null);
3. elements (`elements.py`): unknown elements, JSON types and lexical forms of primitives, required
   bindings (`bindings.py`); structure and cardinality (fhir.resources R4B models); core invariants
   (`invariants.py`): all found at once, in one OperationOutcome;
4. profiles (the engine in `app/fhir/profiles/`): the default profile of the type, the resource's claimed
   `meta.profile`s and the `profile=` canonicals `$validate` asks for;
5. business rules (422): NHS number check digit on every identifier with the NHS number system.

1-3 answer 400; 4 and 5 are checked together and answer 422 (a `profile=` this server does not know is
400 first), as docs/api/errors.md lists them. `validate_resource` raises the first stage that
fails; `$validate` turns that into a 200 OperationOutcome.

Message ids: SF-0100 not an object, SF-0101 resourceType, SF-0102 id, SF-0103 id vs URL, SF-0104 binding,
SF-0105 invariant, SF-0106 ele-1, SF-0107 structure (model), SF-0108 unknown element or wrong JSON shape,
SF-0109 primitive value, SF-0113 missing required element, SF-0114 unknown profile, SF-0116 $validate
parameters, SF-0117 unknown contained resource type, SF-0201 NHS number, SF-0002 $validate success.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from app.errors import BadRequest, Issue, Unprocessable, operation_outcome
from app.fhir import nhs_number
from app.fhir import profiles as sf_profiles
from app.fhir.elements import Node, walk
from app.fhir.ids import ID_RE
from app.fhir.invariants import CHECKS, invariant_issues
from app.fhir.resources import structure_errors
from app.vocabulary import HL7_STRUCTURE_DEFINITION

CORE_PROFILE = HL7_STRUCTURE_DEFINITION  # + resource type: the base profile every resource meets
# the definition paths `invariant_issues` has checks for: the walk keeps only their Nodes (and resource roots)
INVARIANT_PATHS = frozenset(CHECKS)


def check_id(res_id: str, expression: str = "id") -> None:
    if not ID_RE.match(res_id):
        raise BadRequest(
            f"'{res_id}' is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .)",
            msg_id="SF-0102",
            expression=expression,
        )


def empty_elements(node: Any, path: str) -> Iterator[str]:
    """ele-1: where the JSON has a null, an empty object, array or string."""
    if node is None:
        yield path
    elif isinstance(node, dict):
        if not node:
            yield path
        for key, value in node.items():
            yield from empty_elements(value, f"{path}.{key}")
    elif isinstance(node, list):
        if not node:
            yield path
        for i, value in enumerate(node):
            # null is allowed inside primitive-extension arrays (`_given`), nowhere else
            if value is None and path.rsplit(".", 1)[-1].startswith("_"):
                continue
            yield from empty_elements(value, f"{path}[{i}]")
    elif isinstance(node, str) and node.strip() == "":
        yield path


# pydantic errors that only echo what the element walk reported in its own words
_REPORTED_BY_WALK = frozenset({"parse_error", "fhir-validation-wrong-resource-type", "extra_forbidden"})
_STRUCTURE_CODES = {"missing": "required", "model_field_validation.missing": "required", "extra_forbidden": "structure"}


def _model_issues(resource_type: str, content: dict[str, Any], known: set[str]) -> list[Issue]:
    """fhir.resources findings the element walk did not already report (cardinality, required, choice)."""
    issues = []
    for expr, etype, msg in structure_errors(resource_type, content):
        if any(expr == k or expr.startswith((k + ".", k + "[")) for k in known):
            continue
        if etype in _REPORTED_BY_WALK and known:
            continue
        code = _STRUCTURE_CODES.get(etype, "structure")
        if code == "required":
            issues.append(Issue(code, f"Missing required element {expr}", expression=(expr,), msg_id="SF-0113"))
        else:
            issues.append(Issue(code, f"{msg.removeprefix('Value error, ')} at {expr}", expression=(expr,),
                                msg_id="SF-0107"))
    return issues


def nhs_number_issues(identifiers: list[Node]) -> list[Issue]:
    """SF-0201 for every Identifier (`elements.Walk.identifiers`) with the NHS number system and a bad value."""
    issues = []
    for node in identifiers:
        value = node.value
        if (
            node.type == "Identifier"
            and value.get("system") == nhs_number.NHS_NUMBER_SYSTEM
            and isinstance(value.get("value"), str)
            and not nhs_number.is_valid(value["value"])
        ):
            issues.append(
                Issue(
                    "business-rule",
                    f"'{value['value']}' is not a valid NHS number (ten digits with a Modulus 11 check digit)",
                    expression=(f"{node.expr}.value",),
                    msg_id="SF-0201",
                )
            )
    return issues


def _check_shape(resource_type: str, content: Any, url_id: str | None, require_id: bool) -> dict[str, Any]:
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
    return content


# -- profiles: handed to the profile engine (app/fhir/profiles) -----------------------------------
def check_profiles(resource_type: str, profiles: Sequence[str]) -> None:
    """400 for a `profile=` this server cannot validate against (so `$validate` cannot be performed):
    the core profile of the type and our own profiles in `fhir_profiles/` are known."""
    for url in profiles:
        if url.split("|")[0] != CORE_PROFILE + resource_type and not sf_profiles.known_profile(url, resource_type):
            raise BadRequest(f"Unknown profile '{url}'", msg_id="SF-0114", code="not-supported", expression="profile")


def profile_issues(
    resource_type: str,
    content: dict[str, Any],
    profiles: Sequence[str],
    extensions: list[tuple[str, dict[str, Any]]] | None = None,
) -> list[Issue]:
    """Issues of `content` against `profiles` (already known to `check_profiles`), its claimed
    `meta.profile`s and the default profile of its type (app/fhir/profiles); errors become 422.
    `extensions`: (expression, Extension) of every Extension in `content`, from the element walk."""
    ours = [p for p in profiles if p.split("|")[0] != CORE_PROFILE + resource_type]
    return sf_profiles.profile_issues(resource_type, content, ours, extensions=extensions)


def validate_resource(
    resource_type: str,
    content: Any,
    *,
    url_id: str | None = None,
    require_id: bool = False,
    profiles: Sequence[str] = (),
) -> list[Issue]:
    """Raise BadRequest (400) or Unprocessable (422) for an invalid resource; return its warnings."""
    content = _check_shape(resource_type, content, url_id, require_id)
    # One walk of the JSON serves stages 2, 3 and 5: it notes where ele-1 may fail (then `empty_elements`
    # reports exactly where, before anything else), and collects the Identifiers and Extensions.
    try:
        found = walk(resource_type, content, INVARIANT_PATHS)
    except Exception:
        _check_empty_elements(resource_type, content)  # ele-1 is reported before anything else
        raise
    if found.maybe_empty:
        _check_empty_elements(resource_type, content)
    issues = found.issues
    known = {e for issue in issues for e in issue.expression}
    issues += _model_issues(resource_type, content, known)
    try:
        issues += invariant_issues(resource_type, content, found.nodes)
    except (TypeError, AttributeError, ValueError, KeyError):
        # Invariants read elements of their datatype; a malformed one (a `telecom` that is a number,
        # an `id` that is an array) can trip them. The structure issues already found say what is
        # wrong. Without any, the failure is a bug of ours and must surface.
        if not issues:
            raise
    if issues:
        raise BadRequest(issues=issues)
    check_profiles(resource_type, profiles)
    rules = nhs_number_issues(found.identifiers) + profile_issues(resource_type, content, profiles, found.extensions)
    if any(i.severity in ("error", "fatal") for i in rules):
        raise Unprocessable(issues=rules)
    return rules


def _check_empty_elements(resource_type: str, content: dict[str, Any]) -> None:
    empties = list(empty_elements(content, resource_type))
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


# -- $validate (https://hl7.org/fhir/R4/resource-operation-validate.html) --------------------------
VALIDATE_MODES = ("create", "update", "profile")


def validate_input(body: Any) -> tuple[Any, list[str], list[str]]:
    """The `resource`, `mode` and `profile` values of a $validate body: a resource or a Parameters (or
    nothing, for an instance's `mode=delete`)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        return body, [], []
    params = body.get("parameter")
    if not isinstance(params, list):
        raise BadRequest("Parameters.parameter must be an array", msg_id="SF-0116", expression="Parameters.parameter")
    resource: Any = None
    modes: list[str] = []
    profiles: list[str] = []
    for i, p in enumerate(params):
        name = p.get("name") if isinstance(p, dict) else None
        value = next((v for k, v in p.items() if k.startswith("value")), None) if isinstance(p, dict) else None
        if name == "resource":
            resource = p.get("resource")
        elif name in ("mode", "profile") and isinstance(value, str):
            (modes if name == "mode" else profiles).append(value)
        else:
            raise BadRequest(f"Unexpected $validate parameter '{name}'", msg_id="SF-0116",
                             expression=f"Parameters.parameter[{i}]")
    if resource is None and "delete" not in modes:  # R4: present unless the mode is delete
        raise BadRequest("The Parameters carry no 'resource' to validate", msg_id="SF-0116",
                         expression="Parameters.parameter")
    return resource, modes, profiles


def validate_operation(resource_type: str, body: Any, modes: Sequence[str], profiles: Sequence[str]) -> dict[str, Any]:
    """The OperationOutcome of `$validate`: 200 with the issues whether or not the resource is valid (as
    the spec, and HAPI FHIR since 6.6, answer); a 4xx FhirError only when validation cannot be performed:
    no resource, a resource of another type, an unknown mode or profile."""
    resource, body_modes, body_profiles = validate_input(body)
    modes = [*modes, *body_modes]
    profiles = [*profiles, *body_profiles]
    for mode in modes:
        if mode not in VALIDATE_MODES:
            raise BadRequest(f"mode '{mode}' is not supported by {resource_type}/$validate "
                             f"({', '.join(VALIDATE_MODES)}; delete needs an instance)", msg_id="SF-0116",
                             expression="mode")
    if not isinstance(resource, dict):
        raise BadRequest("The resource to validate must be a JSON object", msg_id="SF-0100")
    if resource.get("resourceType") != resource_type:
        raise BadRequest(f"{resource_type}/$validate takes a {resource_type}, not '{resource.get('resourceType')}'",
                         msg_id="SF-0101", expression="resourceType")
    check_profiles(resource_type, profiles)
    issues: list[Issue] = []
    if "update" in modes and "id" not in resource:
        issues.append(Issue("required", "An update needs the resource id", expression=(f"{resource_type}.id",),
                            msg_id="SF-0103"))
    try:
        issues += validate_resource(resource_type, resource, profiles=profiles)
    except (BadRequest, Unprocessable) as invalid:
        issues += invalid.issues
    return validation_outcome(issues)


def validation_outcome(issues: list[Issue]) -> dict[str, Any]:
    """`$validate`'s OperationOutcome: the issues, and a note of success when none is an error."""
    if not any(i.severity in ("error", "fatal") for i in issues):
        issues = [*issues, Issue("informational", "Validation successful: no errors found", "information",
                                 msg_id="SF-0002")]
    return operation_outcome(issues)
