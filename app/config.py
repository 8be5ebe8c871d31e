"""Settings, read from the environment (and a `.env` file), built by a factory, never at import time.

Each field is `SAFEFLAG_<NAME>`; docs/deployment.md lists the ones a deployment sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024
HolidaysRegion = Literal["england-and-wales", "scotland", "northern-ireland"]  # UK bank-holiday calendars
MAX_CHAIN = 3  # references one chained search parameter goes through


@dataclass(frozen=True)
class SearchLimits:
    """What one search may ask for (enforced while it is parsed, app/fhir/search/limits.py)."""

    max_criteria: int = 10
    max_values: int = 100

    def describe(self) -> str:
        return (f"at most {self.max_criteria} search criteria (each repeated parameter and each _sort, _include "
                f"and _revinclude value counting once), {self.max_values} values in all (a,b counts two; a "
                f"chained parameter's count once per resource type it is tried on) and chains through {MAX_CHAIN} references")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SAFEFLAG_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./var")
    database_url: str | None = None
    base_url: str = "http://127.0.0.1:8080"
    auth_issuers: str = "[]"
    webhook_allow: str = "127.0.0.1,localhost"  # host:port entries, or a host for ports 80/443 (app/notify/allow.py)
    max_body_bytes: int = 20 * MiB
    max_url_bytes: int = Field(default=8 * 1024, ge=256)  # path + query; longer answers 414 (app/security/middleware.py)
    max_document_bytes: int = Field(default=10 * MiB, ge=1)  # a referral copy's document (Binary or inline)
    default_count: int = 50
    max_count: int = 500
    max_includes: int = 1000
    # what one search may ask for (app/fhir/search/limits.py), and entries per batch/transaction Bundle:
    # beyond them 400 too-costly
    search_max_criteria: int = Field(default=10, ge=1)
    search_max_values: int = Field(default=100, ge=1)
    bundle_max_entries: int = Field(default=100, ge=1)
    log_level: str = "INFO"
    metrics_bind: str = ""  # loopback host:port of a token-free /metrics listener (app/metrics_listener.py)
    profiles_dir: Path | None = None  # conformance resources to validate with (default: the bundled fhir_profiles/)
    db_pool_size: int = Field(default=16, ge=1)
    statement_timeout_seconds: float = Field(default=10.0, ge=0)  # PostgreSQL; 0: none
    # SQLite commits without fsync (synchronous=NORMAL): faster, but the last acknowledged commits can
    # be lost on power loss or an OS crash (never on a crash of the process). Off by default.
    sqlite_may_lose_commits_on_power_loss: bool = False
    # security (app/security): per-client token bucket (0 turns it off), browser origins allowed by CORS
    # freeze the long-lived heap after slow full garbage collections (app/heap.py); off only to compare
    gc_freeze: bool = True
    rate_limit_per_second: float = Field(default=100.0, ge=0)
    rate_limit_burst: int = Field(default=200, ge=1)
    cors_origins: str = ""
    # whose bank holidays the acknowledgement due times skip (app/safeguarding/tasks.py)
    holidays_region: HolidaysRegion = "england-and-wales"
    # notification delivery: in the server process, or in `safeflag dispatcher`
    dispatcher_in_process: bool = True
    notify_poll_seconds: float = 0.5
    notify_lease_seconds: float = 30.0
    notify_backoff_base: float = 1.0
    notify_backoff_cap: float = 3600.0
    notify_retry_window: float = 24 * 3600.0
    notify_timer_seconds: float = 30.0
    notify_trace_dir: str = ""  # the notification benchmark's stage trace (app/notify/trace.py); empty: none
    # the web app at /app (app/web; docs/web-app.md): OpenID Connect sign-in (Authorization Code + PKCE)
    web_oidc_issuer: str = ""  # the provider's issuer; empty: nobody can sign in through a provider
    web_oidc_discovery_url: str = ""  # default: <issuer>/.well-known/openid-configuration
    web_oidc_client_id: str = ""
    web_oidc_client_secret: str = ""  # empty: a public client (PKCE alone)
    web_oidc_redirect_url: str = ""  # default: <base URL>/app/auth/callback
    web_oidc_scopes: str = "openid profile email"
    # which ID-token claims carry the role, organisation, practitioner and care setting (app/web/claims.py)
    web_claim_role: str = "role"
    web_claim_org: str = "org"
    web_claim_practitioner: str = "fhirUser"
    web_claim_care_setting: str = "care_setting"
    web_claim_name: str = "name"
    web_role_map: str = "{}"  # JSON {"claim value": "safeflag-role"}; empty: the claim names the role itself
    web_idle_timeout_seconds: int = Field(default=15 * 60, ge=1)
    web_cookie_secure: Literal["auto", "always", "never"] = "auto"  # auto: Secure when the base URL is https
    web_dev_sign_in: bool = False  # sign in as one of the demo borough's people: loopback binds only
    # test runs only (app/clock.py): the server's clock starts at this ISO instant and runs in real time;
    # refused at start unless `testing` is on and, for `serve`, the bind is loopback
    testing: bool = False
    test_clock: str = ""

    @cached_property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'safeflag.db'}"

    @property
    def search_limits(self) -> SearchLimits:
        return SearchLimits(self.search_max_criteria, self.search_max_values)

    @property
    def sqlite_durable(self) -> bool:
        return not self.sqlite_may_lose_commits_on_power_loss

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def webhook_hosts(self) -> list[str]:
        return [h.strip().lower() for h in self.webhook_allow.split(",") if h.strip()]

    @property
    def fhir_base(self) -> str:
        return self.base_url.rstrip("/") + "/fhir"


def get_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
