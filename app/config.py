"""Settings, read from the environment (and a `.env` file), built by a factory, never at import time.

Contract section 1 lists the variables and their defaults.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SAFEFLAG_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./var")
    database_url: str | None = None
    base_url: str = "http://127.0.0.1:8080"
    auth_issuers: str = "[]"
    webhook_allow: str = "127.0.0.1,localhost"
    max_body_bytes: int = 20 * MiB
    default_count: int = 50
    max_count: int = 500
    max_includes: int = 1000
    log_level: str = "INFO"
    db_pool_size: int = Field(default=10, ge=1)

    @cached_property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'safeflag.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def fhir_base(self) -> str:
        return self.base_url.rstrip("/") + "/fhir"


def get_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
