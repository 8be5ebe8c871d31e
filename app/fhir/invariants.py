"""Core R4 invariants that clients of our 14 resource types actually hit, checked on the element
values `elements.walk` collected (https://hl7.org/fhir/R4/conformance-rules.html#constraints).

Checked (key, where):
- ele-1  every element has a value or children: `validation.empty_elements`, before the walk
- per-1  Period: start <= end (https://hl7.org/fhir/R4/datatypes.html#Period)
- ext-1  Extension: extensions or a value[x], not both, not neither
- ref-1  Reference: a local `#id` reference names a contained resource
- Reference.reference follows R4's literal reference grammar (https://hl7.org/fhir/R4/references.html#literal):
         `Type/id` with an optional `/_history/vid`, the same under an absolute http(s) base, `#id` (or `#`)
         for a contained resource, `urn:uuid:` / `urn:oid:` (Bundle entries), or a conditional
         `Type?criteria` (Bundle entries, resolved before the write). An id of `.` or `..` is refused
         too: it is a path step, not a resource. So `Patient/../../etc/passwd` is a 400.
- att-1  Attachment: `data` needs `contentType`
- cpt-2  ContactPoint: `value` needs `system`
- qty-3  Quantity (and Age, Count, Distance, Duration): `code` needs `system`
- txt-1, txt-2  Narrative.div: well-formed XHTML `<div>` without scripts, forms or event
         handlers (partial txt-1), with some content. As HAPI, a missing xmlns is accepted.
- dom-2, dom-4, dom-5  contained resources: no nested contained, no meta.versionId/lastUpdated,
         no security labels
- pat-1  Patient.contact: a name, telecom, address or organization
- org-1, org-2, org-3  Organization: an identifier or name; no `home` address or telecom
- ctm-1  CareTeam.participant: onBehalfOf only when member is a Practitioner
- inv-1  Task: lastModified >= authoredOn
- sev-1  AuditEvent.entity: name or query, not both

Not checked: dom-3 (every contained resource referenced; HAPI does not enforce it on write either),
dom-6 (narrative advised: a best-practice warning), and invariants of types that only occur inside
extensions of these resources (Timing tim-*, Range rng-2, SampledData, Dosage).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from app.errors import Issue
from app.fhir.elements import Node
from app.fhir.ids import ID as _ID
from app.fhir.search.dates import parse_range

XHTML_NS = "{http://www.w3.org/1999/xhtml}"
# txt-1 (partial): elements and attributes outside "basic html formatting"
_FORBIDDEN_TAGS = frozenset(
    {"script", "form", "input", "button", "select", "textarea", "option", "iframe", "frame", "frameset", "object",
     "embed", "applet", "base", "link", "meta", "style", "head", "body", "html"}
)
_DECLARATION = re.compile(r"<!(DOCTYPE|ENTITY)", re.IGNORECASE)
# `Type/id` or `.../Type/id/_history/n` (https://hl7.org/fhir/R4/references.html#literal)
_TYPED_REFERENCE = re.compile(rf"(?:^|/)([A-Z][A-Za-z]+)/{_ID}(?:/_history/[^/]+)?$")

_LITERAL_REFERENCE = re.compile(
    rf"(?:https?://(?:[A-Za-z0-9\-\\.:%$]*/)+)?[A-Z][A-Za-z]+/(?!\.\.?(?:/|$)){_ID}(?:/_history/(?!\.\.?$){_ID})?"
    r"|#[A-Za-z0-9\-.]{0,64}"
    r"|urn:uuid:[A-Za-z0-9\-._]{1,64}"  # a UUID, or a looser placeholder some clients use in Bundles
    r"|urn:oid:[0-2](?:\.(?:0|[1-9][0-9]*))+"
    r"|[A-Z][A-Za-z]+\?\S+"
)

Check = Callable[[Node, "Context"], list[Issue]]


class Context:
    """What a check may need beyond its own element: the ids of the root's contained resources."""

    def __init__(self, resource_type: str, content: dict[str, Any]) -> None:
        self.resource_type = resource_type
        contained = content.get("contained")
        self.contained_ids = {
            c.get("id") for c in contained if isinstance(c, dict)
        } if isinstance(contained, list) else set()


def _fail(key: str, text: str, expr: str) -> list[Issue]:
    return [Issue("invariant", f"{key}: {text}", expression=(expr,), msg_id="SF-0105")]


def _before(later: Any, earlier: Any) -> bool:
    """True when the date/time `later` is certainly before `earlier` (partial dates compare as ranges)."""
    if not isinstance(later, str) or not isinstance(earlier, str):
        return False
    a, b = parse_range(later), parse_range(earlier)
    return bool(a and b and a[1] <= b[0])


def period(node: Node, _ctx: Context) -> list[Issue]:
    v = node.value
    if _before(v.get("end"), v.get("start")):
        return _fail("per-1", "If present, start SHALL have a lower value than end", node.expr)
    return []


def extension(node: Node, _ctx: Context) -> list[Issue]:
    has_value = any(k.startswith("value") for k in node.value)
    if has_value == ("extension" in node.value):
        return _fail("ext-1", "Must have either extensions or value[x], not both", node.expr)
    return []


def reference(node: Node, ctx: Context) -> list[Issue]:
    ref = node.value.get("reference")
    if isinstance(ref, str) and not _LITERAL_REFERENCE.fullmatch(ref):
        return [Issue("invalid", f"'{ref[:200]}' is not a FHIR R4 reference: use Type/id (optionally /_history/n), "
                      "an absolute URL ending so, #id for a contained resource, or urn:uuid: in a Bundle",
                      expression=(f"{node.expr}.reference",), msg_id="SF-0118")]
    if isinstance(ref, str) and ref.startswith("#") and ref != "#" and ref[1:] not in ctx.contained_ids:
        return _fail("ref-1", f"SHALL have a contained resource if a local reference is provided ({ref})",
                     f"{node.expr}.reference")
    return []


_QTY_3 = ("qty-3", "code", "system", "If a code for the unit is present, the system SHALL also be present")
# data type -> (key, element, the element it needs, text): "if `element` is present, so SHALL `needs` be"
_IMPLIES = {
    "Attachment": ("att-1", "data", "contentType", "If the Attachment has data, it SHALL have a contentType"),
    "ContactPoint": ("cpt-2", "value", "system", "A system is required if a value is provided"),
    **{t: _QTY_3 for t in ("Quantity", "Age", "Count", "Distance", "Duration")},
}


def implies(node: Node, _ctx: Context) -> list[Issue]:
    key, element, needs, text = _IMPLIES[node.path]
    if element in node.value and needs not in node.value:
        return _fail(key, text, node.expr)
    return []


def narrative(node: Node, _ctx: Context) -> list[Issue]:
    div = node.value.get("div")
    if not isinstance(div, str):
        return []
    expr = f"{node.expr}.div"
    if _DECLARATION.search(div):
        return _fail("txt-1", "The narrative may not hold DOCTYPE or ENTITY declarations", expr)
    try:
        root = ET.fromstring(div)
    except ET.ParseError as exc:
        return _fail("txt-1", f"The narrative SHALL be well-formed XHTML ({exc})", expr)
    if root.tag not in ("div", f"{XHTML_NS}div"):
        return _fail("txt-1", "The narrative SHALL be a <div> in the XHTML namespace", expr)
    for el in root.iter():
        tag = el.tag.removeprefix(XHTML_NS) if isinstance(el.tag, str) else ""
        if "}" in tag or tag.lower() in _FORBIDDEN_TAGS:
            return _fail("txt-1", f"The narrative SHALL contain only basic html formatting elements, not <{tag}>",
                         expr)
        if any(name.lower().startswith("on") for name in el.attrib):
            return _fail("txt-1", "The narrative SHALL NOT contain event handler attributes", expr)
    if not "".join(root.itertext()).strip() and len(root) == 0:
        return _fail("txt-2", "The narrative SHALL have some non-whitespace content", expr)
    return []


def contained(node: Node, _ctx: Context) -> list[Issue]:
    """dom-2/4/5 on the root resource's contained resources."""
    issues: list[Issue] = []
    items = node.value.get("contained")
    if "." in node.expr or not isinstance(items, list):
        return issues
    for i, res in enumerate(items):
        expr = f"{node.expr}.contained[{i}]"
        if not isinstance(res, dict):
            continue
        if "contained" in res:
            issues += _fail("dom-2", "A contained resource SHALL NOT contain nested Resources", expr)
        meta: dict[str, Any] = res["meta"] if isinstance(res.get("meta"), dict) else {}
        if "versionId" in meta or "lastUpdated" in meta:
            issues += _fail("dom-4", "A contained resource SHALL NOT have a meta.versionId or a meta.lastUpdated", expr)
        if "security" in meta:
            issues += _fail("dom-5", "A contained resource SHALL NOT have a security label", expr)
    return issues


def patient_contact(node: Node, _ctx: Context) -> list[Issue]:
    if not any(k in node.value for k in ("name", "telecom", "address", "organization")):
        return _fail("pat-1", "SHALL at least contain a contact's details or a reference to an organization",
                     node.expr)
    return []


def organization(node: Node, _ctx: Context) -> list[Issue]:
    v = node.value
    issues: list[Issue] = []
    if "identifier" not in v and "name" not in v:
        issues += _fail("org-1", "The organization SHALL at least have a name or an identifier", node.expr)
    for element, key, what in (("address", "org-2", "An address"), ("telecom", "org-3", "The telecom")):
        for i, item in enumerate(v.get(element) or ()):
            if isinstance(item, dict) and item.get("use") == "home":
                issues += _fail(key, f"{what} of an organization can never be of use 'home'",
                                f"{node.expr}.{element}[{i}]")
    return issues


def care_team_participant(node: Node, _ctx: Context) -> list[Issue]:
    member = node.value.get("member")
    ref = member.get("reference") if isinstance(member, dict) else None
    match = _TYPED_REFERENCE.search(ref) if isinstance(ref, str) else None
    # a member we cannot type (an identifier, a urn:uuid) passes, as resolve() would find nothing
    if "onBehalfOf" in node.value and match and match.group(1) != "Practitioner":
        return _fail("ctm-1", "CareTeam.participant.onBehalfOf can only be populated when "
                     "CareTeam.participant.member is a Practitioner", node.expr)
    return []


def task(node: Node, _ctx: Context) -> list[Issue]:
    if _before(node.value.get("lastModified"), node.value.get("authoredOn")):
        return _fail("inv-1", "Last modified date must be greater than or equal to authored-on date", node.expr)
    return []


def audit_entity(node: Node, _ctx: Context) -> list[Issue]:
    if "name" in node.value and "query" in node.value:
        return _fail("sev-1", "Either a name or a query (NOT both)", node.expr)
    return []


# definition path (a data type, backbone element or resource) -> checks
CHECKS: dict[str, tuple[Check, ...]] = {
    "Period": (period,),
    "Extension": (extension,),
    "Reference": (reference,),
    **{t: (implies,) for t in _IMPLIES},
    "Narrative": (narrative,),
    "Patient.contact": (patient_contact,),
    "Organization": (organization,),
    "CareTeam.participant": (care_team_participant,),
    "Task": (task,),
    "AuditEvent.entity": (audit_entity,),
}


def invariant_issues(resource_type: str, content: dict[str, Any], nodes: list[Node]) -> list[Issue]:
    ctx = Context(resource_type, content)
    issues: list[Issue] = []
    for node in nodes:
        if not isinstance(node.value, dict):
            continue
        for check in CHECKS.get(node.path, ()):
            issues += check(node, ctx)
        if node.path == node.type and "contained" in node.value:  # a resource root
            issues += contained(node, ctx)
    return issues
