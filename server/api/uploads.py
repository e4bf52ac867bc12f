"""Seed 001's ``POST /api/v1/operator/upload-image`` and the public URLs its images live at,
and the URLs of the files customers' mail carried (issue 15).

The URLs need no credentials: visitors' chat windows load them in ``<img>``, and the 128
random bits in each name are what keeps them private.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from server.api.wire import ok
from server.errors import Invalid, NotFound, UnsupportedMediaType
from server.services import services
from server.uploads import FILES, MEDIA_TYPES, SERVE_ROOT, too_large

UPLOAD_PATH = "/api/v1/operator/upload-image"
# The image travels in field "image"; some clients name it "file".
FIELDS = ("image", "file")
# Room for the multipart framing around the image: boundaries, part headers, a few fields.
FORM_OVERHEAD_BYTES = 16 * 1024
FORM_FIELDS_MAX = 8
SERVE_HEADERS = {
    # The stored bytes decoded as this type; a browser must not guess another (HTML, script).
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'",
    # A name is never reused for other bytes, so a copy cached for a year is never stale.
    "Cache-Control": "public, max-age=31536000, immutable",
}


async def _body(request: Request, max_bytes: int) -> AsyncGenerator[bytes, None]:
    """The request body, refused as soon as it grows past the image limit and the framing."""
    limit = max_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(max_bytes)
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large(max_bytes)
        yield chunk


async def _read_image(request: Request, max_bytes: int) -> bytes:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "multipart/form-data":
        raise UnsupportedMediaType(
            "unsupported_media_type", "send the image as multipart/form-data"
        )
    parser = MultiPartParser(
        request.headers, _body(request, max_bytes), max_files=1, max_fields=FORM_FIELDS_MAX
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise Invalid("invalid_form", exc.message) from None
    try:
        upload = next((form[f] for f in FIELDS if f in form), None)
        if not isinstance(upload, UploadFile):
            raise Invalid("missing_field", "image is required, as a file part")
        return await upload.read()
    finally:
        await form.close()


async def upload_image(request: Request) -> Response:
    found = services(request)
    principal = await found.auth.headers(request.headers)
    principal.require_operator()
    data = await _read_image(request, found.images.max_bytes)
    name = await found.images.save(principal.account_id, data)
    base = found.settings.public_url or str(request.base_url).rstrip("/")
    return ok(url=f"{base}{SERVE_ROOT}/{principal.account_id}/{name}")


async def serve_image(request: Request) -> Response:
    path = services(request).images.path_for(
        request.path_params["account_id"], request.path_params["name"]
    )
    if path is None or not await asyncio.to_thread(path.is_file):
        raise NotFound("image_not_found", "no such image")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=SERVE_HEADERS)


async def serve_file(request: Request) -> Response:
    """A stored attachment, whatever it holds, as bytes to save: never shown in the page."""
    path = services(request).files.path_for(
        request.path_params["account_id"], request.path_params["name"]
    )
    if path is None or not await asyncio.to_thread(path.is_file):
        raise NotFound("file_not_found", "no such file")
    headers = {**SERVE_HEADERS, "Content-Disposition": "attachment"}
    return FileResponse(path, media_type="application/octet-stream", headers=headers)


def routes() -> list[Route]:
    return [
        Route(UPLOAD_PATH, upload_image, methods=["POST"]),
        Route(SERVE_ROOT + "/{account_id}/{name}", serve_image, methods=["GET"]),
        Route(f"{SERVE_ROOT}/{{account_id}}/{FILES}/{{name}}", serve_file, methods=["GET"]),
    ]
