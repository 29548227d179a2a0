"""RFC 9457 problem details for every error the HTTP service answers; an unexpected exception is a 503, never a
500 (docs/door.md)."""
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("retailflow.http")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://retailflow.dev/problems/"

TITLES = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
    408: "Request timeout", 409: "Conflict", 413: "Content too large", 415: "Unsupported media type",
    422: "Unprocessable content", 429: "Too many requests", 503: "Service unavailable",
}


class FieldError(BaseModel):
    field: str  # dotted path into the body, e.g. "data.lines.0.quantity"
    message: str
    type: str | None = None


class ProblemBody(BaseModel):
    """The problem document (RFC 9457) with retailflow's extension `errors` (field by field)."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


class Problem(Exception):
    def __init__(self, status: int, detail: str, *, slug: str | None = None, title: str | None = None,
                 errors: list[FieldError] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug or TITLES.get(status, "error").lower().replace(" ", "-")
        self.title = title or TITLES.get(status, "Error")
        self.errors = errors
        self.headers = headers or {}

    def body(self, instance: str | None = None) -> dict[str, Any]:
        return ProblemBody(type=TYPE_BASE + self.slug, title=self.title, status=self.status, detail=self.detail,
                           instance=instance, errors=self.errors).model_dump(exclude_none=True)

    def response(self, instance: str | None = None) -> JSONResponse:
        return JSONResponse(self.body(instance), status_code=self.status, headers=self.headers,
                            media_type=PROBLEM_JSON)


def field_errors(err: ValidationError | RequestValidationError, prefix: tuple = ()) -> list[FieldError]:
    out = []
    for e in err.errors():
        loc = [*prefix, *e.get("loc", ())]
        out.append(FieldError(field=".".join(str(p) for p in loc) or "(body)", message=str(e.get("msg", "")),
                              type=e.get("type")))
    return out


def unavailable(detail: str, retry_after: int = 5) -> Problem:
    return Problem(503, detail, slug="unavailable", headers={"Retry-After": str(retry_after)})


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries documenting problem answers."""
    return {s: {"model": ProblemBody, "description": TITLES.get(s, "error"),
                "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemBody"}}}}
            for s in statuses}


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return exc.response(request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return Problem(422, "the request does not match the schema", slug="validation",
                       errors=field_errors(exc)).response(request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code if exc.status_code < 500 else 503
        headers = dict(exc.headers or {})
        if status == 503:
            headers.setdefault("Retry-After", "5")
        return Problem(status, str(exc.detail), headers=headers).response(request.url.path)

    @app.exception_handler(SQLAlchemyError)
    @app.exception_handler(TimeoutError)
    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        # every database call is bounded (persistence/engine.py); one that ran out is "retry later"
        log.warning("database call failed answering %s: %s", request.url.path, type(exc).__name__)
        return unavailable("the database cannot be reached right now; nothing was changed").response(
            request.url.path)

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError) -> JSONResponse:
        # a document too deep for a parser is the sender's permanent error, not a reason to retry
        return Problem(400, "the request is nested too deeply", slug="not-json").response(request.url.path)

    app.add_middleware(CatchAll)


class CatchAll:
    """Outermost guard (pure ASGI): any exception that escaped the handlers is logged and answered 503."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def guarded_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        except Exception:
            log.exception("unexpected error answering %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = unavailable("an unexpected error occurred; nothing was changed, retry later").response(
                scope.get("path"))
            await response(scope, receive, send)
