"""Every failure a client can cause becomes a 4xx with an `ErrorBody`, never a 500 or a trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lookalike.errors import LookalikeError
from lookalike.faces import NoFaceError

log = logging.getLogger(__name__)


class ApiError(LookalikeError):
    """A request the service refuses: answered with `status`, an `ErrorBody` and any `headers`."""

    def __init__(self, status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers


class BodyTooLarge(HTTPException):
    """The request body streamed past the limit. A FastAPI `HTTPException`, because FastAPI turns
    any other error raised while it parses a form into a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is over the {limit} byte upload limit")


def error_response(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": error, "detail": detail}, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, err: ApiError) -> JSONResponse:
        return error_response(err.status, err.error, err.detail, err.headers)

    @app.exception_handler(NoFaceError)
    async def no_face(_: Request, err: NoFaceError) -> JSONResponse:
        return error_response(422, "no_face", f"{err}: send a photo in which a face is clearly visible")

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(_: Request, err: BodyTooLarge) -> JSONResponse:
        return error_response(413, "too_large", str(err.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, err: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(x) for x in e['loc'] if x != 'body')}: {e['msg']}" for e in err.errors()]
        return error_response(422, "invalid_request", "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        # keeps Starlette's headers: a 405 says which methods are allowed (`Allow`)
        return error_response(err.status_code, "http_error", str(err.detail), err.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "the server failed on this request; see its log")
