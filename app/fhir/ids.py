"""The FHIR `id` datatype (https://hl7.org/fhir/R4/datatypes.html#id), defined once: 1 to 64 of
A-Z a-z 0-9 `-` `.`. Route ids, resource ids, references and the caseload import all use it."""

from __future__ import annotations

import re

ID = r"[A-Za-z0-9\-.]{1,64}"  # the pattern, for building larger patterns
ID_RE = re.compile(rf"^{ID}$")
