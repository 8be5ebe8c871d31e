"""The raw ceiling: the least a FHIR-shaped Flag endpoint can do on the same stack.

POST /fhir/Flag inserts the client's JSON into ONE table (no validation, no version row, no index
rows, no audit, no outbox); GET /fhir/Flag/{id} reads it back; GET /fhir/Flag?patient:identifier=
...|N looks the NHS number up in one indexed column (other parameters, `_include` included, are
ignored). It uses SafeFlag's own engine factory (`app/storage/db.py`: SQLite WAL with one writer
connection and BEGIN IMMEDIATE, or an asyncpg pool) and is served by bench/run.py exactly like
`safeflag serve` (uvicorn, httptools, uvloop, same worker count), so the ratio SafeFlag/ceiling is
the cost of SafeFlag's own work.

    BENCH_CEILING_DB=sqlite+aiosqlite:////tmp/c.db uvicorn bench.ceiling_app:create_app --factory
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from sqlalchemy import Column, Index, MetaData, String, Table, insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.responses import JSONResponse, Response

from app.storage.db import create_engine
from app.storage.tables import PK, JsonDoc

FHIR_JSON = "application/fhir+json; charset=utf-8"
NHS_PREFIX = "https://fhir.nhs.uk/Id/nhs-number|"

metadata = MetaData()
ceiling_flag = Table(
    "ceiling_flag",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("res_id", String(64), nullable=False, unique=True),
    Column("nhs", String(16), nullable=True),
    Column("content", JsonDoc, nullable=False),
    Index("ix_ceiling_flag_nhs", "nhs"),
)


def _fhir(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type=FHIR_JSON)


def _not_found(text: str) -> Response:
    return _fhir(
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "not-found", "diagnostics": text}],
        },
        404,
    )


def create_app() -> FastAPI:
    url = os.environ["BENCH_CEILING_DB"]
    base = os.environ.get("BENCH_CEILING_BASE", "http://127.0.0.1:8080").rstrip("/") + "/fhir"
    pool = int(os.environ.get("BENCH_CEILING_POOL", "10"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(url, pool_size=pool)
        # several workers start at once; the one that loses the race to create the table finds it made
        with contextlib.suppress(DBAPIError):
            async with engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
        app.state.engine = engine
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/readyz")
    async def readyz() -> Response:
        return JSONResponse({"status": "ok"})

    @app.post("/fhir/Flag")
    async def create(request: Request) -> Response:
        doc = orjson.loads(await request.body())
        res_id = str(uuid.uuid4())
        doc["id"] = res_id
        ident = (doc.get("subject") or {}).get("identifier") or {}
        try:
            async with app.state.engine.begin() as conn:
                await conn.execute(
                    insert(ceiling_flag).values(res_id=res_id, nhs=ident.get("value"), content=doc)
                )
        except IntegrityError:
            return _fhir(
                {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "conflict"}]},
                409,
            )
        return _fhir(doc, 201, {"Location": f"{base}/Flag/{res_id}/_history/1", "ETag": 'W/"1"'})

    @app.get("/fhir/Flag/{res_id}")
    async def read(res_id: str) -> Response:
        async with app.state.engine.connect() as conn:
            row = (
                await conn.execute(select(ceiling_flag.c.content).where(ceiling_flag.c.res_id == res_id))
            ).first()
        if row is None:
            return _not_found(f"Flag/{res_id} is not known")
        return _fhir(row[0], 200, {"ETag": 'W/"1"'})

    @app.get("/fhir/Flag")
    async def search(request: Request) -> Response:
        ident = request.query_params.get("patient:identifier", "")
        nhs = ident.removeprefix(NHS_PREFIX)
        async with app.state.engine.connect() as conn:
            rows = (await conn.execute(select(ceiling_flag.c.content).where(ceiling_flag.c.nhs == nhs))).all()
        entries = [
            {"fullUrl": f"{base}/Flag/{r[0]['id']}", "resource": r[0], "search": {"mode": "match"}}
            for r in rows
        ]
        return _fhir({"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries})

    return app
