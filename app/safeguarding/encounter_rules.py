"""ED attendance rules on every Encounter write (docs/api/ed-attendance.md): notices and Tasks in the same
transaction as the Encounter, so a committed attendance always has its notices; a notice routed to
no one is told to the writer, the log and the metrics (unrouted.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.safeguarding.ed_attendance import on_encounter_write
from app.safeguarding.lookup import Lookup
from app.safeguarding.unrouted import tell
from app.storage.repository import utc_ms

if TYPE_CHECKING:
    from app.ports import WriteContext
    from app.stored import StoredResource


async def ed_attendance(
    ctx: WriteContext, stored: StoredResource, previous: StoredResource | None, scratch: dict[str, Any]
) -> None:
    # `previous` is None only for a brand-new Encounter (a re-created deleted one has its deleted version)
    sent = await on_encounter_write(ctx.repo, Lookup(ctx.session, ctx.base), stored,
                                    utc_ms(ctx.clock.now()), first_write=previous is None,
                                    region=ctx.settings.holidays_region)
    tell(ctx.note(), stored, sent, ctx.base)
