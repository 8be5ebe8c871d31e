# SafeFlag as a container image (docker-compose.yml builds it).
#
#   docker build -t safeflag .
#   docker run -p 127.0.0.1:8080:8080 -e SAFEFLAG_DATABASE_URL=postgresql+asyncpg://... safeflag
#
# Settings, processes, the TLS proxy in front and backups: docs/deployment.md.
#
# The first stage builds the wheel; the image installs the locked dependencies (requirements.lock, the
# versions CI tested, hash-checked) and then only that wheel, as `pip install` would on any machine: the
# migrations and conformance resources travel inside the package (app/_data), so there is no source tree
# and no PYTHONPATH in the image.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md requirements.lock ./
COPY app/ app/
COPY migrations/ migrations/
COPY fhir_profiles/ fhir_profiles/
RUN pip wheel --no-cache-dir --no-deps -w /dist . && cp requirements.lock /dist/

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SAFEFLAG_DATA_DIR=/var/lib/safeflag

COPY --from=build /dist/ /tmp/dist/
RUN pip install -r /tmp/dist/requirements.lock \
    && pip install --no-deps /tmp/dist/*.whl \
    && rm -rf /tmp/dist \
    && useradd --system --uid 10001 --home-dir /var/lib/safeflag --create-home safeflag \
    && chmod 700 /var/lib/safeflag
WORKDIR /var/lib/safeflag

# The issuer key and (SQLite only) the database live in the data directory: mount a volume there.
USER safeflag
VOLUME ["/var/lib/safeflag"]
EXPOSE 8080

# /readyz: the database answers and its schema is at this build's migration head (no token needed).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=4).status != 200)"]

# Migrates first, then serves with the notification dispatcher in-process.
CMD ["safeflag", "serve", "--host", "0.0.0.0", "--port", "8080"]
