"""What refusing repeated JSON member names costs a create Flag's body parsing (app/api/deps.py).

`parse_json` parses with orjson (which keeps the last of a repeated name silently), counts the parsed
members while checking the nesting depth, and counts member-name endings (`"` then `:`) in the raw
bytes; only when there are more endings than members (a repeated name, or a string holding `\\":`)
does it parse again with the standard library to find the repeat. This prints microseconds per
call (best of 7 rounds, CPU time) for a typical Flag body:

- before: orjson and the depth walk, as the code did before the check;
- after: `parse_json` as it is;
- after, re-parsed: a body whose text holds `\\":`, which takes the slower exact path.

    .venv/bin/python -m bench.parse_json
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from app.api.deps import MAX_DEPTH, parse_json
from tests.support.fhir_data import flag

ROUNDS, CALLS = 7, 20_000


def _before(raw: bytes) -> Any:
    value = orjson.loads(raw)
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > MAX_DEPTH:
            return None
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return value


def _best(call: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.process_time()
        for _ in range(CALLS):
            call()
        best = min(best, (time.process_time() - start) / CALLS)
    return best * 1e6


def main() -> None:
    body = flag("Patient/c1", "Organization/la")
    raw = orjson.dumps(body)
    tricky = orjson.dumps({**body, "extension": [{"url": "https://x.example/n", "valueString": 'said "a": 1'}]})
    print(f"create Flag body: {len(raw)} bytes; microseconds per parse, best of {ROUNDS} x {CALLS}")
    for name, call in (("before", lambda: _before(raw)), ("after", lambda: parse_json(raw)),
                       ("after, re-parsed", lambda: parse_json(tricky))):
        print(f"  {name:<17} {_best(call):6.2f}")


if __name__ == "__main__":
    main()
