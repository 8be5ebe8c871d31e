"""AuditEvent for every access, in the IHE Basic Audit Log Patterns shape
(https://profiles.ihe.net/ITI/BALP/, FHIR R4 AuditEvent https://hl7.org/fhir/R4/auditevent.html).

`audit_for` builds the resource; the caller appends it to the audit trail (`audit_trail.record`, the
only store of AuditEvents) in the same transaction as the access, denied attempts included.

Shape (BALP RESTful patterns, with the OAuth access-token user agent):
- `type` rest; `subtype` the restful-interaction code; `action` C / R / U / D, E for searches;
  `outcome` 0 success, 4 minor failure (refused, not found, invalid request), 8 serious (server
  error), with `outcomeDesc` saying why.
- agents: the user (type UserOauthAgent + IRCP for reads/queries or AGNT for writes, `requestor`
  true, `who` the fhirUser reference plus `iss`/`sub` as identifier, `altId` sub, `role` the
  SafeFlag role, `policy` the token's jti); the user's organisation (v3-RoleClass PROV, so
  `AuditEvent?agent=Organization/x` finds an organisation's accesses); the client (`who` the
  client_id, the network address) and the server, typed by direction as BALP does (read: client
  DCM 110152 Destination / server 110153 Source; query: the reverse; writes: 110150 Application /
  custodian).
- entities: the resource (`Type/id/_history/n`, audit-entity-type 2, object-role 4 Domain Resource,
  its security labels); each patient it is about (audit-entity-type 1, object-role 1 Patient, so
  `AuditEvent?patient=` finds every access to a child's record); the query for searches (base64, and
  the text in `description`); the X-Request-Id (BasicAuditEntityType XrequestId).
Client text an event echoes (an error's wording, the query, the request id, token claims) goes through
`clean`: control characters become visible `\\uXXXX` escapes and the text is bounded, so that every
refused attempt can be written (PostgreSQL's JSONB refuses U+0000) and read back safely.
We follow the BALP patterns but claim no BALP profile in `meta.profile`: the organisation agent and
the request-id entity break the closed slicing of the write profiles, and BALP asks for one
AuditEvent per patient of a search result, where we record one per access with a patient entity per
patient, so that "one access, one AuditEvent" stays countable.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from app.fhir.search.definitions import params_for, reference_values
from app.security.labels import security_labels
from app.security.principal import Principal
from app.storage.repository import utc_ms
from app.stored import format_instant
from app.vocabulary import CANONICAL_BASE, IDENTIFIER_SYSTEM, OBJECT_ROLE, ROLE_CLASS, USER_ROLE

BALP = "https://profiles.ihe.net/ITI/BALP/"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
ROLE_SYSTEM = USER_ROLE
CLIENT_ID_SYSTEM = IDENTIFIER_SYSTEM + "client-id"
OUTCOME_TEXT = {"0": "Success", "4": "Minor failure", "8": "Serious failure", "12": "Major failure"}
MAX_TEXT = 2000  # characters of client text (an error's wording, a query) kept in one audit element
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")

# restful-interaction code -> action (https://hl7.org/fhir/R4/valueset-audit-event-action.html)
INTERACTIONS: dict[str, str] = {
    "read": "R",
    "vread": "R",
    "history-instance": "R",
    "history-type": "R",
    "history-system": "R",
    "search-type": "E",
    "search-system": "E",
    "create": "C",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "operation": "E",
}
# BALP agent types by direction: reads send data to the client (client = Destination Role ID),
# queries send the query to the server (client = Source Role ID), writes use Application/Custodian.
_CLIENT_SERVER = {
    "R": (("DCM", "110152", "Destination Role ID"), ("DCM", "110153", "Source Role ID")),
    "E": (("DCM", "110153", "Source Role ID"), ("DCM", "110152", "Destination Role ID")),
}
_WRITE_CLIENT_SERVER = (("DCM", "110150", "Application"), ("PPT", "custodian", "Custodian"))
_SYSTEMS = {"DCM": DCM, "PPT": "http://terminology.hl7.org/CodeSystem/provenance-participant-type"}


def _cc(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def clean(text: str, limit: int = MAX_TEXT) -> str:
    """Client text fit for the audit trail: every control character (U+0000 above all, which PostgreSQL's
    JSONB cannot hold), line separator and lone surrogate written as a visible `\\uXXXX` escape, and at
    most `limit` characters. An audit record must always be writable, and must not let a client forge
    line breaks or terminal escapes into whatever later prints it."""
    if not text.isprintable():
        text = _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def patients_of(resource_type: str, content: dict[str, Any] | None, res_id: str | None = None,
                base: str = "") -> list[str]:
    """The Patients a resource is about: itself, or its `patient` search parameter's targets."""
    if resource_type == "Patient":
        rid = res_id or (content or {}).get("id")
        return [f"Patient/{rid}"] if rid else []
    param = params_for(resource_type).get("patient")
    if param is None or not content:
        return []
    out = {f"{t}/{i}" for t, i, _u, _s, _v in reference_values(param, content, base) if t == "Patient" and i}
    return sorted(out)


def _user_agent(principal: Principal, action: str) -> dict[str, Any]:
    who: dict[str, Any] = {"identifier": {"system": clean(principal.issuer), "value": clean(principal.sub)}}
    if principal.fhir_user:
        who["reference"] = clean(principal.fhir_user)
    if action in ("R", "E"):
        how = _cc("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP", "information recipient")
    else:
        how = _cc(ROLE_CLASS, "AGNT", "agent")
    agent: dict[str, Any] = {
        "type": {"coding": [
            _cc(BALP + "CodeSystem/UserAgentTypes", "UserOauthAgent", "User OAuth Agent participant"), how,
        ]},
        "role": [{"coding": [_cc(ROLE_SYSTEM, principal.role)]}],
        "who": who,
        "altId": clean(principal.sub),
        "requestor": True,
    }
    if principal.token_id:
        agent["policy"] = [clean(principal.token_id)]
    return agent


def _agents(principal: Principal | None, action: str, client_address: str | None, server: str) -> list[dict[str, Any]]:
    agents: list[dict[str, Any]] = []
    if principal is not None:
        agents.append(_user_agent(principal, action))
        if principal.org:
            agents.append({
                "type": {"coding": [_cc(ROLE_CLASS, "PROV",
                                        "healthcare provider")]},
                "who": {"reference": principal.org},
                "requestor": False,
            })
    else:
        agents.append({
            "type": {"coding": [_cc(BALP + "CodeSystem/UserAgentTypes", "UserOauthAgent")]},
            "who": {"display": "unauthenticated"},
            "requestor": True,
        })
    client_type, server_type = _CLIENT_SERVER.get(action, _WRITE_CLIENT_SERVER)
    client = clean((principal.client_id if principal else None) or "unknown")
    client_agent: dict[str, Any] = {
        "type": {"coding": [_cc(_SYSTEMS[client_type[0]], client_type[1], client_type[2])]},
        "who": {"identifier": {"system": CLIENT_ID_SYSTEM, "value": client}},
        "requestor": False,
    }
    if client_address:
        client_agent["network"] = {"address": client_address, "type": "2"}  # 2 = IP address
    agents.append(client_agent)
    agents.append({
        "type": {"coding": [_cc(_SYSTEMS[server_type[0]], server_type[1], server_type[2])]},
        "who": {"display": server},
        "requestor": False,
        "network": {"address": server, "type": "5"},  # 5 = URI
    })
    return agents


def audit_for(
    *,
    interaction: str,
    principal: Principal | None,
    recorded: datetime,
    outcome: str = "0",
    outcome_desc: str | None = None,
    resource_type: str | None = None,
    res_id: str | None = None,
    version_id: int | str | None = None,
    resource: dict[str, Any] | None = None,
    patients: Iterable[str] = (),
    query: str | None = None,
    request_id: str | None = None,
    client_address: str | None = None,
    server: str = CANONICAL_BASE + "/fhir",
    site: str = "SafeFlag",
    changes: Iterable[tuple[str, str]] = (),
    subscriber: str | None = None,
) -> dict[str, Any]:
    """One AuditEvent for one access.

    `interaction` is a restful-interaction code (read, vread, search-type, create, update, patch,
    delete, history-instance/-type/-system, operation). `resource` is the content read or written
    (its patient subject and security labels are recorded; never its data); `patients` adds Patient
    references (e.g. those of search results or named in the query). `query` is the raw query string
    of a search (`Flag?patient=...`). `outcome` is "0", "4" or "8". `changes` are (element, what
    changed) details of the resource entity (a Subscription's status and endpoint); `subscriber` the
    organisation a Subscription belongs to (an entity with object-role 9, so `AuditEvent?entity=` finds
    the changes to an organisation's subscriptions).
    """
    action = INTERACTIONS[interaction]
    event: dict[str, Any] = {"resourceType": "AuditEvent"}
    event.update({
        "type": _cc("http://terminology.hl7.org/CodeSystem/audit-event-type", "rest", "Restful Operation"),
        "subtype": [_cc("http://hl7.org/fhir/restful-interaction", interaction, interaction)],
        "action": action,
        "recorded": format_instant(utc_ms(recorded)),
        "outcome": outcome,
        "outcomeDesc": clean(outcome_desc or OUTCOME_TEXT.get(outcome, "")),
        "agent": _agents(principal, action, client_address, server),
        "source": {
            "site": site,
            "observer": {"display": server},
            "type": [_cc("http://terminology.hl7.org/CodeSystem/security-source-type", "4", "Application Server")],
        },
    })
    entities: list[dict[str, Any]] = []
    if resource_type and res_id:
        what = clean(f"{resource_type}/{res_id}" + (f"/_history/{version_id}" if version_id is not None else ""))
        data: dict[str, Any] = {
            "what": {"reference": what},
            "type": _cc(ENTITY_TYPE, "2", "System Object"),
            "role": _cc(OBJECT_ROLE, "4", "Domain Resource"),
        }
        labels = security_labels(resource)
        if labels:
            data["securityLabel"] = [{k: v for k, v in c.items() if k in ("system", "code", "display")} for c in labels]
        details = [{"type": element, "valueString": text} for element, text in changes]
        if details:
            data["detail"] = details
        entities.append(data)
    if subscriber:
        entities.append({
            "what": {"reference": subscriber},
            "type": _cc(ENTITY_TYPE, "3", "Organization"),
            "role": _cc(OBJECT_ROLE, "9", "Subscriber"),
        })
    about = dict.fromkeys(list(patients) + patients_of(resource_type or "", resource, res_id))
    for ref in about:
        entities.append({
            "what": {"reference": ref},
            "type": _cc(ENTITY_TYPE, "1", "Person"),
            "role": _cc(OBJECT_ROLE, "1", "Patient"),
        })
    if query is not None:
        entities.append({
            "type": _cc(ENTITY_TYPE, "2", "System Object"),
            "role": _cc(OBJECT_ROLE, "24", "Query"),
            "description": clean(query),
            "query": base64.b64encode(query.encode(errors="replace")).decode(),  # as sent, up to a lone surrogate
        })
    if request_id:
        entities.append({
            "type": _cc(BALP + "CodeSystem/BasicAuditEntityType", "XrequestId"),
            "what": {"identifier": {"value": clean(request_id)}},
        })
    if entities:
        event["entity"] = entities
    return event


def outcome_for_status(status: int) -> str:
    """HTTP status -> AuditEvent.outcome: client errors (incl. refusals) minor, server errors serious."""
    if status < 400:
        return "0"
    return "8" if status >= 500 else "4"
