"""`POST [base]/<Type>/<id>/$validate`: `$validate` at the instance level
(https://hl7.org/fhir/R4/resource-operation-validate.html): would this body be accepted as an update of
that resource, by this caller, now?

The resource must exist and be readable by the caller: it is read as a read would be (404 for an unknown
id or one outside the caller's reach, 410 when deleted, 403 when its label withholds it) and audited as
that read. Then, with no `mode` or `mode=update`, the body goes through the checks an update runs, in
the update's order, up to (not including) the write: the id must equal the URL id, the resource and
profile validation, the write policy for this record (a role that may not update it gets the update's
403), and the resource type's business rules on the change (a Flag's allowed transitions, a referral
copy's status, duplicates...). Whatever the body gets wrong is an issue of the 200 OperationOutcome, as
at the type level; nothing is stored. `mode=profile` checks the body against the profiles only.
`mode=delete` (no resource needed) asks whether deleting it would be accepted: the types never deleted,
the delete policy for this record, and the rules that keep a record (a referral's Communication).
`create` belongs to the type level: 400.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.errors import BadRequest, Conflict, Issue, MethodNotAllowed, Unprocessable
from app.fhir.validation import check_profiles, validate_input, validate_resource, validation_outcome

if TYPE_CHECKING:
    from app.interactions.service import FhirService

INSTANCE_MODES = ("update", "delete", "profile")


async def validate_instance(svc: FhirService, resource_type: str, res_id: str, body: Any,
                            modes: list[str], profiles: list[str]) -> dict[str, Any]:
    resource, body_modes, body_profiles = validate_input(body)
    modes, profiles = [*modes, *body_modes], [*profiles, *body_profiles]
    for mode in modes:
        if mode not in INSTANCE_MODES:
            raise BadRequest(f"mode '{mode}' is not supported by {resource_type}/{res_id}/$validate "
                             f"({', '.join(INSTANCE_MODES)}; create is validated at {resource_type}/$validate)",
                             msg_id="SF-0116", expression="mode")
    if "delete" not in modes:
        if not isinstance(resource, dict):
            raise BadRequest("The resource to validate must be a JSON object", msg_id="SF-0100")
        if resource.get("resourceType") != resource_type:
            raise BadRequest(f"{resource_type}/{res_id}/$validate takes a {resource_type}, not "
                             f"'{resource.get('resourceType')}'", msg_id="SF-0101", expression="resourceType")
    check_profiles(resource_type, profiles)
    current = await svc.read(resource_type, res_id)
    issues: list[Issue] = []
    try:
        if "delete" in modes:
            await svc.authorize("delete", resource_type, stored=current)  # the types never deleted first (405)
            await svc.interceptors.run_before_delete(svc, current)
        elif "profile" in modes:
            issues += validate_resource(resource_type, resource, profiles=profiles)
        else:
            try:
                issues += validate_resource(resource_type, resource, url_id=res_id, require_id=True, profiles=profiles)
            except (BadRequest, Unprocessable) as fault:  # an update no one may make says so first (405)
                await svc.authorize("update", resource_type, stored=current, fault=fault)
                raise
            labelled = svc.guard.labels(resource)
            await svc.authorize("update", resource_type, new=labelled, stored=current)
            await svc.interceptors.run_before_write(svc, resource_type, labelled, current, {})
    except (BadRequest, Unprocessable, Conflict, MethodNotAllowed) as invalid:
        issues += invalid.issues
    return validation_outcome(issues)
