"""The canonical URL of every search parameter SafeFlag serves (CapabilityStatement
`rest.resource.searchParam.definition`, which R4 requires for core and IG parameters).

Core parameters are R4's own SearchParameters (https://hl7.org/fhir/R4/searchparameter-registry.html):
mostly `http://hl7.org/fhir/SearchParameter/<Type>-<name>`, but several are one definition shared by
many types: `Resource-*` (`_id`, `_lastUpdated`, `_security`, `_tag`, `_profile`), `individual-*` (the
person parameters of Patient, Practitioner, RelatedPerson and PractitionerRole's telecoms),
`clinical-*` (`patient`, `identifier`, `date`, `type`, `encounter` of the clinical resources) and
`conformance-*` (`url`, `name`, `status`, `version` of the conformance resources). The exceptions
below are those of R4's `search-parameters.json` (4.0.1); tests/hapi checks the whole table against
it. Parameters R4 does not define for the type are SafeFlag's own, published in `fhir_profiles/`.
"""

from __future__ import annotations

from app.fhir.search.definitions import SUPPORTED_TYPES
from app.vocabulary import CANONICAL_BASE

CORE = "http://hl7.org/fhir/SearchParameter/"
OWN = CANONICAL_BASE + "/SearchParameter/"

_RESOURCE = ("_id", "_lastUpdated", "_security", "_tag", "_profile")
_INDIVIDUAL = {
    "Patient": ("family", "given", "address", "address-city", "address-postalcode", "telecom", "phone", "email",
                "gender", "birthdate"),
    "Practitioner": ("family", "given", "address", "address-city", "address-postalcode", "telecom", "phone",
                     "email", "gender"),
    "RelatedPerson": ("address", "address-city", "address-postalcode", "telecom", "phone", "email", "gender",
                      "birthdate"),
    "PractitionerRole": ("telecom", "phone", "email"),
}
_CLINICAL = {
    "CareTeam": ("identifier", "patient", "date"),
    "Encounter": ("identifier", "patient", "type", "date"),
    "Flag": ("patient", "date", "encounter"),
    "DocumentReference": ("identifier", "patient", "type", "encounter"),
}
_CONFORMANCE = ("url", "name", "status", "version")
# (type, name) -> the id of our SearchParameter in fhir_profiles/SearchParameter/
OWN_PARAMS = {
    ("Flag", "status"): "flag-status",
    ("Flag", "category"): "flag-category",
    ("Flag", "code"): "flag-code",
    ("RelatedPerson", "family"): "relatedperson-family",
    ("RelatedPerson", "given"): "relatedperson-given",
}


def definition(resource_type: str, name: str) -> str:
    """The canonical URL of `resource_type`'s search parameter `name`."""
    own = OWN_PARAMS.get((resource_type, name))
    if own is not None:
        return OWN + own
    if name in _RESOURCE:
        return f"{CORE}Resource-{name[1:]}"
    if name in _INDIVIDUAL.get(resource_type, ()):
        return f"{CORE}individual-{name}"
    if name in _CLINICAL.get(resource_type, ()):
        return f"{CORE}clinical-{name}"
    if name in _CONFORMANCE and resource_type not in SUPPORTED_TYPES:  # the read-only conformance types
        return f"{CORE}conformance-{name}"
    return f"{CORE}{resource_type}-{name}"
