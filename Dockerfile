# SafeFlag as a container image (docker-compose.yml builds it; README "Running with Docker").
#
#   docker build -t safeflag .
#   docker run -p 127.0.0.1:8080:8080 -e SAFEFLAG_DATABASE_URL=postgresql+asyncpg://... safeflag
#
# The source tree stays in /app and is first on PYTHONPATH: the application finds alembic.ini, migrations/ and
# fhir_profiles/ next to its own package (app/storage/migrate.py, app/fhir/profiles/store.py), which a plain
# site-packages install does not carry. `pip install .` brings the dependencies and the `safeflag` command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    SAFEFLAG_DATA_DIR=/var/lib/safeflag

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY app/ app/
COPY migrations/ migrations/
COPY fhir_profiles/ fhir_profiles/
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /var/lib/safeflag --create-home safeflag \
    && chmod 700 /var/lib/safeflag

# The issuer key and (SQLite only) the database live in the data directory: mount a volume there.
USER safeflag
VOLUME ["/var/lib/safeflag"]
EXPOSE 8080

# /readyz: the database answers and its schema is at this build's migration head (no token needed).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=4).status != 200)"]

# Migrates first, then serves with the notification dispatcher in-process (contract section 1).
CMD ["safeflag", "serve", "--host", "0.0.0.0", "--port", "8080"]
