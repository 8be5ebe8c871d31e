"""The CapabilityStatement, generated from what is implemented: the search-parameter registry,
the interactions each type allows (policy), and the operations the FHIR router serves
(https://hl7.org/fhir/R4/capabilitystatement.html). Nothing is claimed beyond that."""

from __future__ import annotations

from typing import Any

from app.fhir.search.canonicals import definition
from app.fhir.search.definitions import SUPPORTED_TYPES, params_for
from app.fhir.search.limits import DEFAULT_LIMITS, SearchLimits
from app.fhir.search.targets import can_target
from app.security.policy import NEVER_DELETED, SERVER_WRITTEN
from app.vocabulary import HL7_STRUCTURE_DEFINITION

FHIR_VERSION = "4.0.1"
SOFTWARE_VERSION = "0.1.0"

_ALL = ["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"]

# operations: name -> (definition canonical, types; None for every type, () for a system-level operation,
# listed in `rest.operation`), as the FHIR router's table serves them (app/api/fhir_routes.py)
Operations = dict[str, tuple[str, tuple[str, ...] | None]]


def reverse_includes(rtype: str) -> list[str]:
    """`_revinclude` values that can find resources of `rtype`: reference parameters of the served types
    whose targets include it. A parameter without declared targets takes any type R4 allows there, so it
    is listed only where the R4 element can point at `rtype` (app/fhir/search/targets.py)."""
    return [f"{other}:{p.name}" for other in SUPPORTED_TYPES for p in params_for(other).values()
            if p.type == "reference" and can_target(p, rtype)]


def _interactions(rtype: str) -> list[str]:
    out = list(_ALL)
    if rtype in NEVER_DELETED:
        out.remove("delete")
    if rtype in SERVER_WRITTEN:
        out = [i for i in out if i not in ("create", "update", "patch")]
    return out


def capability_statement(fhir_base: str, published: str, operations: Operations, *, limits: SearchLimits = DEFAULT_LIMITS,
                         bundle_max_entries: int = 100) -> dict[str, Any]:
    resources = []
    for rtype in SUPPORTED_TYPES:
        writable = rtype not in SERVER_WRITTEN
        entry: dict[str, Any] = {
            "type": rtype,
            "profile": HL7_STRUCTURE_DEFINITION + rtype,
            "interaction": [{"code": c} for c in _interactions(rtype)],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": writable,
            "conditionalCreate": writable,
            "conditionalRead": "full-support",
            "conditionalUpdate": writable,
            "conditionalDelete": "single" if rtype not in NEVER_DELETED else "not-supported",
            "searchInclude": [f"{rtype}:{p.name}" for p in params_for(rtype).values() if p.type == "reference"],
            "searchRevInclude": reverse_includes(rtype),
            "searchParam": [
                {"name": "_id", "definition": definition(rtype, "_id"), "type": "token"},
                {"name": "_lastUpdated", "definition": definition(rtype, "_lastUpdated"), "type": "date"},
                *[
                    {"name": p.name, "definition": definition(rtype, p.name), "type": p.type,
                     "documentation": p.description or p.expression}
                    for p in params_for(rtype).values()
                ],
            ],
        }
        ops = [
            {"name": name, "definition": canonical}
            for name, (canonical, types) in sorted(operations.items())
            if types is None or rtype in types
        ]
        if ops:
            entry["operation"] = ops
        resources.append(entry)
    # our profiles per type, the subscription topics, and the read-only conformance resource types
    from app.fhir.conformance import with_conformance  # here: loading fhir_profiles/ waits for the first use

    resources = with_conformance(resources)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": published,
        "publisher": "SafeFlag",
        "kind": "instance",
        "software": {"name": "SafeFlag", "version": SOFTWARE_VERSION},
        "implementation": {"description": "SafeFlag FHIR R4 safeguarding service", "url": fhir_base},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/merge-patch+json"],
        "rest": [
            {
                "mode": "server",
                "documentation": _documentation(limits, bundle_max_entries),
                "security": _security(fhir_base),
                "resource": resources,
                "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
                "operation": [{"name": name, "definition": canonical}
                              for name, (canonical, types) in sorted(operations.items()) if types == ()],
            }
        ],
    }


def _documentation(limits: SearchLimits, bundle_max_entries: int) -> str:
    """The bounds a client must stay within (markdown)."""
    return (f"Each search (and each conditional interaction's criteria) takes {limits.describe()}; a search "
            f"beyond that is answered 400 with issue code `too-costly`. A batch or transaction Bundle takes at most "
            f"{bundle_max_entries} entries, and its search entries at most {bundle_max_entries} criteria together; "
            "more is answered 413 `too-costly`.")


def _security(fhir_base: str) -> dict[str, Any]:
    """SMART on FHIR security (https://hl7.org/fhir/smart-app-launch/conformance.html): Bearer tokens
    from the local issuer or a configured identity provider; Backend Services at /auth/token."""
    base = fhir_base.removesuffix("/fhir")
    return {
        "cors": False,
        "service": [{
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR"}],
            "text": "OAuth2 bearer tokens (SMART v2 scopes); SMART Backend Services client_credentials",
        }],
        # No oauth-uris extension: its `authorize` URL is 1..1 and SafeFlag has no authorize endpoint (HAPI's
        # validator rejects the extension without it); SMART v2 discovery is .well-known/smart-configuration.
        "description": "Every endpoint except /fhir/metadata and /fhir/.well-known/smart-configuration needs "
                       "'Authorization: Bearer' with a signed JWT access token; discovery at "
                       f"/fhir/.well-known/smart-configuration, token endpoint {base}/auth/token.",
    }
