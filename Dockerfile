# Image for the streaming upload service (`app.main:app` under uvicorn).
#
#   docker build -t streaming-upload .
#   docker run -p 8000:8000 -e S3_BUCKET=... -e S3_ENDPOINT_URL=... streaming-upload
#
# Run-time knobs besides the app's own variables (app/settings.py):
#   WEB_CONCURRENCY         uvicorn worker processes (default 1)
#   FORWARDED_ALLOW_IPS     proxies whose X-Forwarded-* headers are trusted (default 127.0.0.1);
#                           behind nginx in another container, set it to that proxy's address
#   SHUTDOWN_GRACE_SECONDS  seconds in-flight uploads get after SIGTERM (default 30); give the
#                           container more than this plus ~30 s of abort clean-up before SIGKILL
#                           (e.g. `docker stop -t 70`, terminationGracePeriodSeconds: 70)

ARG PYTHON_VERSION=3.11

# ---- builder: a venv with the dependencies and the project's wheel ----------------------------
FROM python:${PYTHON_VERSION}-slim AS builder

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# streaming-form-data ships Linux wheels for x86_64 only: on arm64 pip compiles it from its
# sdist, which needs a C compiler. Only this stage has one; the final image copies the venv.
# Versions come from the base image's Debian release, so pinning them would only break builds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

WORKDIR /src

# Dependencies first, read from pyproject.toml, so this layer is rebuilt only when they change.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip install --no-cache-dir --requirement requirements.txt

# Then the project itself, as a wheel, without touching the dependencies again.
# (README.md is the wheel's long description, named in pyproject.toml.)
COPY README.md ./
COPY app ./app
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/wheels . \
    && pip install --no-cache-dir --no-deps /tmp/wheels/*.whl

# ---- final: the venv on a clean slim image, no compilers, non-root ----------------------------
FROM python:${PYTHON_VERSION}-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/venv/bin:$PATH"

RUN groupadd --system --gid 10001 app \
    && useradd --system --no-log-init --uid 10001 --gid app \
        --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv

# An empty working directory: `app` is imported from the venv, never from a stray source tree.
WORKDIR /srv
USER 10001:10001

EXPOSE 8000

# /healthz only says the process serves; /readyz (storage answers) suits a readiness probe.
# urllib is used because the slim image has no curl; proxies from the environment are ignored.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:8000/healthz', timeout=4)"]

# exec: uvicorn becomes PID 1 and gets SIGTERM itself, so graceful shutdown works.
CMD ["sh", "-c", "exec uvicorn app.main:app --host 0.0.0.0 --port 8000 --workers \"${WEB_CONCURRENCY:-1}\" --proxy-headers --forwarded-allow-ips \"${FORWARDED_ALLOW_IPS:-127.0.0.1}\" --timeout-graceful-shutdown \"${SHUTDOWN_GRACE_SECONDS:-30}\""]
