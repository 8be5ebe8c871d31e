"""`POST [base]/<Type>/<id>/$validate`: `$validate` at the instance level
(https://hl7.org/fhir/R4/resource-operation-validate.html): would this body be accepted as an update of
that resource, by this caller, now?

The policy decides once (`FhirService.authorize`), on the interaction asked about and the record as
stored: with no `mode` or `mode=update`, the update of that record by this body (a body the checks
refuse is judged as an unchanged update, as a patch that cannot apply is); `mode=delete`, its delete;
`mode=profile`, its read. A refusal answers as that interaction would, before anything the body gets
wrong: 404 for an unknown id or one outside the caller's reach, 403 when its label withholds it or the
role may not make the change; then 410 when deleted. The access is audited as a read of the record. An
interaction no one may perform (a Flag's delete, an AuditEvent's update) is the verdict itself, a 405
issue in a 200, for any id, as the interaction itself answers before any lookup. Otherwise the body goes
through the checks an update runs, up to (not including) the write: the id must equal the URL id, the
resource and profile validation, and the resource type's business rules on the change (a Flag's allowed
transitions, a referral copy's status, duplicates...). Whatever the body gets wrong is an issue of the
200 OperationOutcome, as at the type level; nothing is stored. `mode=profile` checks the body against the
profiles only; `mode=delete` (no resource needed) the rules that keep a record (a referral's
Communication). `create` belongs to the type level: 400.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.errors import BadRequest, Conflict, Gone, Issue, MethodNotAllowed, NotFound, Unprocessable
from app.fhir.validation import check_profiles, validate_input, validate_resource, validation_outcome
from app.interactions.preconditions import begin

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
    begin(svc.guard, "read", resource_type, res_id)  # audited as a read of the record
    current = await svc.reads.stored(resource_type, res_id)
    interaction = "delete" if "delete" in modes else "read" if "profile" in modes else "update"
    issues: list[Issue] = []
    new: dict[str, Any] | None = None
    try:
        if interaction != "delete":
            try:
                update = interaction == "update"
                issues += validate_resource(resource_type, resource, url_id=res_id if update else None,
                                            require_id=update, profiles=profiles)
                new = svc.guard.labels(resource) if update else None
            except (BadRequest, Unprocessable) as fault:
                issues += fault.issues  # told once the decision allows: a refusal answers first
        # the one decision; an update whose body is faulty is judged as an unchanged one (as a patch's)
        changed = (new or current.content) if interaction == "update" and current is not None else None
        await svc.authorize(interaction, resource_type, stored=current, new=changed, res_id=res_id)
    except MethodNotAllowed as refused:  # no one may: the verdict, for any id (as the interaction itself answers)
        await svc.guard.audited()
        return validation_outcome(refused.issues)
    if current is None:
        raise NotFound(f"{resource_type}/{res_id} is not known", msg_id="SF-0301", expression="id")
    if current.deleted:
        raise Gone(f"{resource_type}/{res_id} was deleted (version {current.version_id})", msg_id="SF-0302",
                   headers={"ETag": current.etag})
    try:
        if interaction == "delete":
            await svc.interceptors.run_before_delete(svc, current)
        elif new is not None:
            await svc.interceptors.run_before_write(svc, resource_type, new, current, {})
    except (BadRequest, Unprocessable, Conflict, MethodNotAllowed) as invalid:
        issues += invalid.issues
    await svc.guard.audited(current)
    await svc.interceptors.run_after_read(svc, [current])
    return validation_outcome(issues)
