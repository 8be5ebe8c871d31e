"""One message id, one meaning: every place in app/ that raises an `SF-nnnn` id answers a status its row
in docs/api/errors.md states, so an id cannot be given a second meaning in another part of the server
(as the Bundle checks and the profile engine once both raised SF-0601..SF-0610) without this failing.

The status of a definition is read from the code: a FhirError subclass raised with `msg_id=` (its
`status`), the access policy's `_deny(status, ...)`, the profile engine's `run.add(...)` (422, or 200 for
a warning), the search toolkit's `bad(...)` (400), and an `Issue` inside one of those (the enclosing
error's status)."""

from __future__ import annotations

import ast
import re
from collections import defaultdict

from app import errors
from tests.docs.runnable import ROOT

ID = re.compile(r"^SF-\d{4}$")
ROW = re.compile(r"^\| `(SF-\d{4})` \| ([^|]*)\|", re.MULTILINE)
ERROR_STATUS = {name: cls.status for name, cls in vars(errors).items()
                if isinstance(cls, type) and issubclass(cls, errors.FhirError) and cls is not errors.FhirError}
ERROR_STATUS["bad"] = 400  # the search toolkit's BadRequest maker (app/fhir/search/values.py)


def _name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _id_of(call: ast.Call) -> str | None:
    for value in [k.value for k in call.keywords if k.arg == "msg_id"] + list(call.args):
        if isinstance(value, ast.Constant) and isinstance(value.value, str) and ID.match(value.value):
            return value.value
    return None


def _warning(call: ast.Call) -> bool:
    return any(isinstance(a, ast.Constant) and a.value in ("warning", "information") for a in call.args) or any(
        k.arg == "severity" and isinstance(k.value, ast.Constant) and k.value.value in ("warning", "information")
        for k in call.keywords)


def definitions() -> dict[str, set[tuple[int, str]]]:
    """Each id raised in app/ -> {(status, where)}."""
    found: dict[str, set[tuple[int, str]]] = defaultdict(set)

    def visit(node: ast.AST, where: str, enclosing: int | None) -> None:
        status = enclosing
        if isinstance(node, ast.Call):
            name, msg_id = _name(node.func), _id_of(node)
            status = ERROR_STATUS.get(name, enclosing)
            if name == "_deny" and node.args and isinstance(node.args[0], ast.Constant):
                status = int(node.args[0].value)
            elif name == "add" and msg_id is not None:  # the profile engine's issues: a 422, or a warning
                status = 200 if _warning(node) else 422
            elif name == "Issue" and _warning(node):
                status = 200
            if msg_id is not None and status is not None:
                found[msg_id].add((status, f"{where}:{node.lineno}"))
        for child in ast.iter_child_nodes(node):
            visit(child, where, status)

    for path in sorted((ROOT / "app").rglob("*.py")):
        visit(ast.parse(path.read_text(encoding="utf-8")), str(path.relative_to(ROOT)), None)
    return found


def test_each_message_id_has_one_meaning() -> None:
    text = (ROOT / "docs" / "api" / "errors.md").read_text(encoding="utf-8")
    documented = {m: {int(s) for s in re.findall(r"\b\d{3}\b", cell)} for m, cell in ROW.findall(text)}
    wrong = {msg_id: sorted(sites) for msg_id, sites in definitions().items()
             if not {s for s, _ in sites} <= documented.get(msg_id, set())}
    assert wrong == {}, "ids raised with a status their errors.md row does not state (a second meaning?)"


def test_the_scan_sees_both_kinds_of_definition() -> None:
    """The scan reads the Bundle checks' and the profile engine's ids (so the test above can fail)."""
    found = definitions()
    assert {s for s, _ in found["SF-0621"]} == {400} and {s for s, _ in found["SF-0601"]} == {422}
    assert {s for s, _ in found["SF-0405"]} == {405} and {s for s, _ in found["SF-0416"]} == {400}
