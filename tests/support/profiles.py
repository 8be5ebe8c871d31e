"""Compile every StructureDefinition of a profile engine now, so a test sees a profile the compiler
refuses (the server compiles each profile on first use)."""

from __future__ import annotations

from app.fhir.profiles.engine import Engine


def compile_all(engine: Engine) -> None:
    for sd in engine.store.structure_definitions():
        engine.compiled(sd["url"])
