"""The ASGI application, built from the environment by `from_env()`.

    uvicorn app.main:app                                  # or: uvicorn --factory app.main:from_env
    hypercorn 'app.main:from_env()'
    granian --interface asgi --factory app.main:from_env

`app` is built on first access; hypercorn resolves it with `eval` on the module's namespace,
which never reaches a module `__getattr__`, so it needs the factory call.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Mount, Route

from app import endpoints, metrics, page
from app.cors import cors_middleware
from app.errors import http_exception_handler, unexpected_error_handler
from app.hooks.uploads import open_hooks
from app.lingering import CountOpenRequests, OpenRequests
from app.logs import configure_logging
from app.resumable import endpoints as resumable
from app.resumable.uploads import ResumableUploads
from app.settings import Settings
from app.storage.memory import pin_malloc_thresholds
from app.storage.session import open_storage

logger = logging.getLogger("app")

#: Seconds a request cut off at shutdown may take to abort its uploads before it answers.
ABORT_GRACE = 30.0


def create_app(settings: Settings) -> Starlette:
    """The service for `settings`; the S3 client opens at start-up and is shared."""
    pin_malloc_thresholds()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not settings.auth_tokens:
            logger.warning("UPLOAD_AUTH_TOKENS is not set: anyone who reaches /uploads may upload")
        async with open_storage(settings) as storage, open_hooks(settings, storage) as hooks:
            app.state.storage = storage
            app.state.hooks = hooks
            app.state.resumable = ResumableUploads(storage, settings, hooks)
            logger.info(
                "ready: bucket=%s endpoint=%s prefix=%s part_size=%d threshold=%d",
                settings.s3_bucket,
                settings.s3_endpoint_url or "aws",
                settings.s3_key_prefix,
                settings.part_size,
                settings.multipart_threshold,
            )
            yield
            # Requests cut off by the end of uvicorn's graceful-shutdown time are aborting
            # their uploads and answering 503: let them finish (app/lingering.py).
            await requests.settled(settings.linger_seconds + ABORT_GRACE)

    requests = OpenRequests()
    app = Starlette(
        routes=[
            Route("/uploads", endpoints.upload, methods=["POST"]),
            Route("/files/", resumable.files, methods=["POST", "OPTIONS"]),
            Route(
                "/files/{upload_id}",
                resumable.upload_resource,
                methods=["GET", "HEAD", "PATCH", "DELETE", "OPTIONS", "POST"],
            ),
            Route("/auth", endpoints.auth, methods=["GET"]),
            Route("/healthz", endpoints.healthz, methods=["GET"]),
            Route("/readyz", endpoints.readyz, methods=["GET"]),
            Route("/metrics", metrics.metrics, methods=["GET"]),
            Route("/", page.index, methods=["GET"]),
            Mount("/static", page.static_files(), name="static"),
        ],
        exception_handlers={
            HTTPException: http_exception_handler,
            Exception: unexpected_error_handler,
        },
        middleware=[*cors_middleware(settings), Middleware(CountOpenRequests, requests=requests)],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.uploads_running = 0  # for UPLOAD_MAX_CONCURRENT
    app.state.hooks = None  # app/hooks/uploads.py, opened with the storage
    return app


def from_env() -> Starlette:
    """The service as the environment configures it (app/settings.py), logging set up.

    The ASGI factory for servers: an invalid variable raises `SettingsError` naming it, so
    the server fails at start rather than on the first request.
    """
    configure_logging()
    return create_app(Settings.from_env())


def __getattr__(name: str) -> Starlette:
    # `app` is built on first access, so importing this module (tests, tools) needs no
    # environment, while `uvicorn app.main:app` fails at start with the bad variable's name.
    if name == "app":
        application = from_env()
        globals()["app"] = application
        return application
    raise AttributeError(name)
