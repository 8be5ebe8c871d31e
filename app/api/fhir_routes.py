"""Every FHIR endpoint under /fhir, in one table: method, path template (after /fhir), the endpoint,
its name, and for an operation the canonical of its OperationDefinition (the CapabilityStatement
lists exactly these operations). The order of the rows does not matter: the most literal template
wins (app/api/router.py), and two rows of the same shape for one method are refused.

Rows take the Accept check and a bearer token first unless they say otherwise (`guards`):
`metadata` and SMART discovery are open, and Binary's read checks no Accept (its native form is
whatever the document is).
"""

from __future__ import annotations

from app.api import (
    auth,
    conformance,
    governance,
    interactions,
    operations,
    referrals,
    safeguarding,
    subscriptions,
    system,
    unknown_operations,
)
from app.api.auth import authenticate
from app.api.deps import check_accept
from app.api.router import Entry, RouteTable
from app.safeguarding.summary import OPERATION_DEFINITION as SAFEGUARDING_SUMMARY

_I = interactions


def _interaction(method: str, template: str, name: str) -> Entry:
    return Entry(method, template, getattr(_I, name), name, doc=_I.doc(name))


def fhir_routes() -> RouteTable:
    return RouteTable([
        # system level
        Entry("GET", "/metadata", system.capabilities, "capabilities", guards=(check_accept,),
              doc={"tags": system.TAGS}),
        Entry("GET", "/.well-known/smart-configuration", auth.smart_configuration, "smart_configuration",
              guards=(), doc={"tags": ["Security"]}),
        Entry("POST", "", system.transaction, "transaction", doc=system.TRANSACTION_DOC),
        _interaction("GET", "/_history", "history_system"),
        Entry("GET", "/$governance-report", governance.governance_report_operation, "governance_report",
              guards=(authenticate, check_accept), operation=governance.GOVERNANCE_REPORT,
              doc=governance.GOVERNANCE_REPORT_DOC),
        # type level
        _interaction("GET", "/{resource_type}", "search_type"),
        _interaction("POST", "/{resource_type}/_search", "search_type_post"),
        _interaction("POST", "/{resource_type}", "create"),
        _interaction("PUT", "/{resource_type}", "conditional_update"),
        _interaction("PATCH", "/{resource_type}", "conditional_patch"),
        _interaction("DELETE", "/{resource_type}", "conditional_delete"),
        _interaction("GET", "/{resource_type}/_history", "history_type"),
        Entry("POST", "/{resource_type}/$validate", operations.validate, "validate", operation=operations.VALIDATE,
              doc=operations.VALIDATE_DOC),
        Entry("GET", "/DocumentReference/$qa-queue", referrals.qa_queue_operation, "qa_queue",
              guards=(authenticate, check_accept), operation=referrals.QA_QUEUE, doc=referrals.QA_QUEUE_DOC),
        Entry("GET", "/Subscription/$status", subscriptions.subscription_status_type, "subscription_status_type",
              operation=subscriptions.STATUS, doc={"tags": subscriptions.TAGS}),
        Entry("POST", "/Subscription/$get-ws-binding-token", subscriptions.get_ws_binding_token,
              "get_ws_binding_token", operation=subscriptions.GET_WS_BINDING_TOKEN, doc={"tags": subscriptions.TAGS}),
        # instance level
        _interaction("GET", "/{resource_type}/{res_id}", "read"),
        _interaction("PUT", "/{resource_type}/{res_id}", "update"),
        _interaction("PATCH", "/{resource_type}/{res_id}", "patch"),
        _interaction("DELETE", "/{resource_type}/{res_id}", "delete"),
        _interaction("GET", "/{resource_type}/{res_id}/_history", "history_instance"),
        _interaction("GET", "/{resource_type}/{res_id}/_history/{version_id}", "vread"),
        Entry("GET", "/Binary/{res_id}", referrals.read_binary, "read_binary", guards=(authenticate,),
              doc={"tags": referrals.TAGS}),
        Entry("POST", "/{resource_type}/{res_id}/$validate", operations.validate_instance_operation,
              "validate_instance", operation=operations.VALIDATE, doc=operations.VALIDATE_INSTANCE_DOC),
        Entry("GET", "/Patient/{res_id}/$safeguarding-summary", safeguarding.summary, "safeguarding_summary",
              operation=SAFEGUARDING_SUMMARY, doc=safeguarding.SUMMARY_DOC),
        Entry("GET", "/Subscription/{res_id}/$status", subscriptions.subscription_status, "subscription_status",
              operation=subscriptions.STATUS, doc={"tags": subscriptions.TAGS}),
        Entry("GET", "/Subscription/{res_id}/$events", subscriptions.subscription_events, "subscription_events",
              operation=subscriptions.EVENTS, doc={"tags": subscriptions.TAGS}),
        Entry("POST", "/Subscription/{res_id}/$get-ws-binding-token", subscriptions.get_ws_binding_token_instance,
              "get_ws_binding_token_instance", operation=subscriptions.GET_WS_BINDING_TOKEN,
              doc={"tags": subscriptions.TAGS}),
        # operations served nowhere at that level (400), or with another method (405)
        *(Entry(method, template, endpoint, name, doc={"include_in_schema": False})
          for template, endpoint, name in (
              ("/${name}", unknown_operations.system_operation, "unknown_system_operation"),
              ("/{resource_type}/${name}", unknown_operations.type_operation, "unknown_type_operation"),
              ("/{resource_type}/{res_id}/${name}", unknown_operations.instance_operation,
               "unknown_instance_operation"))
          for method in ("GET", "POST")),
        # the conformance resources of fhir_profiles/, read-only
        *conformance.entries(),
    ])
