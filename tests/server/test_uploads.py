"""Operator image uploads (seed 001's upload-image) and the public URLs they are served at."""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from server.app import create_app
from server.services import Services
from server.settings import DEFAULT_MAX_IMAGE_BYTES, Settings, SettingsError, load_settings
from server.uploads import ImageStore
from tests.conftest import TEST_PASSWORD, Tenant, assert_error, bearer, make_tenant

UPLOAD = "/api/v1/operator/upload-image"
# Above the 64 KiB general body limit, so a test image can sit between the two.
MAX_IMAGE_BYTES = 300_000
FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b"<script>alert(document.cookie)</script></svg>"
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        {"LIVEOP_DATA_DIR": str(tmp_path / "data"), "LIVEOP_MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES)}
    )


@pytest.fixture
async def operator(services: Services, tenant: Tenant) -> dict[str, str]:
    session = await services.auth.login(f"alex@{tenant.account_id}.test", TEST_PASSWORD)
    return bearer(session.token)


def picture(fmt: str, size: tuple[int, int] = (64, 48), *, noise: bool = False) -> bytes:
    """A real image; noise does not compress, so its file is about 3 bytes a pixel."""
    if noise:
        pixels = random.Random(size[0] * 100_000 + size[1]).randbytes(size[0] * size[1] * 3)
        image = Image.frombytes("RGB", size, pixels)
    else:
        image = Image.new("RGB", size, (200, 30, 60))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def handmade_png(width: int, height: int, scanlines: bytes) -> bytes:
    """A grayscale PNG whose header claims ``width`` x ``height``, every checksum correct."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(scanlines))
        + _chunk(b"IEND", b"")
    )


async def upload(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    data: bytes,
    filename: str = "photo.png",
    field: str = "image",
) -> httpx.Response:
    files = {field: (filename, data, "application/octet-stream")}
    return await client.post(UPLOAD, headers=headers, files=files)


async def uploaded_url(client: httpx.AsyncClient, headers: dict[str, str], data: bytes) -> str:
    response = await upload(client, headers, data)
    body = response.json()
    assert response.status_code == 200, body
    assert body["success"] is True
    url: str = body["url"]
    return url


def stored_path(settings: Settings, url: str) -> Path:
    account_id, name = url.split("/")[-2:]
    return settings.data_dir / "uploads" / account_id / name


# accepted images, served back


@pytest.mark.parametrize("fmt", sorted(FORMATS))
async def test_each_format_is_stored_and_served_back_byte_identical(
    client: httpx.AsyncClient,
    operator: dict[str, str],
    tenant: Tenant,
    settings: Settings,
    fmt: str,
) -> None:
    data = picture(fmt)
    url = await uploaded_url(client, operator, data)

    prefix = f"http://liveop.test/uploads/{tenant.account_id}/"
    assert url.startswith(prefix)
    extension = ".jpg" if fmt == "JPEG" else f".{fmt.lower()}"
    assert url.endswith(extension) and len(url) == len(prefix) + 22 + len(extension)
    assert stored_path(settings, url).read_bytes() == data
    served = await client.get(url)  # no credentials: visitors' <img> tags load these
    assert served.status_code == 200
    assert served.content == data
    assert served.headers["content-type"] == FORMATS[fmt]
    assert served.headers["x-content-type-options"] == "nosniff"
    assert served.headers["content-security-policy"] == "default-src 'none'"
    assert "immutable" in served.headers["cache-control"]


async def test_the_content_decides_not_the_file_name(
    client: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    response = await upload(client, operator, picture("PNG"), filename="notes.txt")
    assert response.status_code == 200, response.json()
    url = response.json()["url"]
    assert url.endswith(".png")
    assert (await client.get(url)).headers["content-type"] == "image/png"


async def test_the_field_may_be_called_file(
    client: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    response = await upload(client, operator, picture("GIF"), field="file")
    assert response.status_code == 200, response.json()


async def test_the_same_bytes_twice_get_two_names_and_no_temporary_files_remain(
    client: httpx.AsyncClient, operator: dict[str, str], settings: Settings
) -> None:
    data = picture("WEBP")
    first = await uploaded_url(client, operator, data)
    second = await uploaded_url(client, operator, data)
    assert first != second
    folder = stored_path(settings, first).parent
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        u.rsplit("/", 1)[1] for u in (first, second)
    )


async def test_an_image_over_the_general_body_limit_but_within_the_image_limit_is_taken(
    client: httpx.AsyncClient, operator: dict[str, str], settings: Settings
) -> None:
    data = picture("PNG", (180, 180), noise=True)
    assert settings.max_body_bytes < len(data) < MAX_IMAGE_BYTES
    url = await uploaded_url(client, operator, data)
    assert (await client.get(url)).content == data


async def test_the_url_starts_with_the_public_url_when_one_is_set(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "LIVEOP_DATA_DIR": str(tmp_path / "data"),
            "LIVEOP_PUBLIC_URL": "https://chat.example.com/support/",
        }
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://internal:8000") as c:
            tenant = await make_tenant(c, application.state.services)
            session = await application.state.services.auth.login(
                f"alex@{tenant.account_id}.test", TEST_PASSWORD
            )
            url = await uploaded_url(c, bearer(session.token), picture("PNG"))
    assert url.startswith(f"https://chat.example.com/support/uploads/{tenant.account_id}/")


# refused content


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("notes.png", b"just some text, not an image\n"),
        ("logo.svg", SVG),
        ("logo.png", SVG),
        ("page.gif", b"GIF89a<html><script>alert(1)</script></html>"),
        ("empty.png", b""),
        ("half.png", picture("PNG")[: len(picture("PNG")) // 2]),
        ("no-end.png", picture("PNG")[:-12]),
        ("half.jpg", picture("JPEG", (64, 64), noise=True)[:2000]),
        # Every checksum is right, but the pixel data stops after 10 bytes of 300 x 200.
        ("empty-pixels.png", handmade_png(300, 200, b"\0" * 10)),
        ("bitmap.bmp", picture("BMP")),
        ("scan.tiff", picture("TIFF")),
    ],
)
async def test_anything_but_a_whole_png_jpeg_gif_or_webp_is_refused(
    client: httpx.AsyncClient,
    operator: dict[str, str],
    settings: Settings,
    filename: str,
    data: bytes,
) -> None:
    response = await upload(client, operator, data, filename=filename)
    assert_error(response, 415, "not_an_image")
    assert not (settings.data_dir / "uploads").exists() or not any(
        (settings.data_dir / "uploads").rglob("*.*")
    )


async def test_a_png_with_a_damaged_chunk_is_refused(
    client: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    data = bytearray(picture("PNG"))
    data[40] ^= 0xFF  # inside IDAT: its checksum no longer matches
    assert_error(await upload(client, operator, bytes(data)), 415, "not_an_image")


async def test_the_handmade_png_is_valid_when_its_pixels_are_all_there(
    client: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    """The control for the bomb and empty-pixel cases: the builder itself makes real PNGs."""
    data = handmade_png(3, 2, b"\0\x10\x20\x30" * 2)
    assert (await upload(client, operator, data)).status_code == 200


@pytest.mark.parametrize(
    ("width", "height"),
    [(8000, 6000), (100_000, 100_000)],  # over our 40 MP, and over Pillow's own bomb limit
)
async def test_decompression_bombs_are_refused_before_decoding(
    client: httpx.AsyncClient, operator: dict[str, str], width: int, height: int
) -> None:
    data = handmade_png(width, height, b"\0" * 100)
    assert len(data) < 200
    assert_error(await upload(client, operator, data), 413, "image_too_many_pixels")


# size limits


async def test_an_image_just_over_the_limit_is_refused(
    client: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    data = picture("PNG", (320, 320), noise=True)
    assert MAX_IMAGE_BYTES < len(data) < MAX_IMAGE_BYTES + 16 * 1024  # the framing allowance
    assert_error(await upload(client, operator, data), 413, "image_too_large")


def _multipart(data: bytes) -> tuple[bytes, str]:
    boundary = "liveop-test-boundary"
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="image"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return (
        head + data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


async def test_a_body_declared_over_the_limit_is_refused_before_it_is_read(
    client: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    body, content_type = _multipart(bytes(2 * MAX_IMAGE_BYTES))
    read = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal read
        read += len(body)
        yield body

    headers = {**operator, "Content-Type": content_type, "Content-Length": str(len(body))}
    response = await client.post(UPLOAD, headers=headers, content=chunks())
    assert_error(response, 413, "image_too_large")
    assert read == 0


async def test_a_streamed_body_is_cut_off_once_it_passes_the_limit(
    client: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    body, content_type = _multipart(bytes(10 * MAX_IMAGE_BYTES))
    chunk = 64 * 1024
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for start in range(0, len(body), chunk):
            sent += chunk
            yield body[start : start + chunk]

    # No Content-Length: the limit must hold while reading, not only on the declared size.
    response = await client.post(
        UPLOAD, headers={**operator, "Content-Type": content_type}, content=chunks()
    )
    assert_error(response, 413, "image_too_large")
    assert sent <= MAX_IMAGE_BYTES + 16 * 1024 + chunk


async def test_the_other_endpoints_keep_the_general_body_limit(
    client: httpx.AsyncClient, operator: dict[str, str], settings: Settings
) -> None:
    files = {"image": ("photo.png", picture("PNG", (180, 180), noise=True), "image/png")}
    response = await client.post("/api/v1/operator/heartbeat", headers=operator, files=files)
    assert settings.max_body_bytes < MAX_IMAGE_BYTES
    assert_error(response, 413, "body_too_large")


# who may upload, and how


async def test_no_credentials_are_refused(client: httpx.AsyncClient) -> None:
    assert_error(await upload(client, {}, picture("PNG")), 401, "missing_credentials")
    bad = bearer("not-a-token")
    assert_error(await upload(client, bad, picture("PNG")), 401, "invalid_token")


async def test_the_api_key_is_refused_because_an_image_is_an_operators(
    client: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    response = await upload(client, {"X-Api-Key": tenant.api_key}, picture("PNG"))
    assert_error(response, 400, "operator_required")
    assert not (settings.data_dir / "uploads").exists()


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"files": {"picture": ("photo.png", picture("PNG"), "image/png")}},
        {"files": {"image": (None, "not a file part")}},  # a text field, not a file
        {"content": b"", "headers": {"Content-Type": "multipart/form-data; boundary=x"}},
    ],
)
async def test_a_form_without_the_image_file_is_refused(
    client: httpx.AsyncClient, operator: dict[str, str], request_kwargs: dict[str, Any]
) -> None:
    headers = {**operator, **request_kwargs.pop("headers", {})}
    response = await client.post(UPLOAD, headers=headers, **request_kwargs)
    assert_error(response, 400, "missing_field")


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("multipart/form-data", b"--x\r\n"),  # no boundary
        ("multipart/form-data; boundary=x", b"garbage without any boundary line"),
    ],
)
async def test_a_malformed_multipart_body_is_refused(
    client: httpx.AsyncClient, operator: dict[str, str], content_type: str, content: bytes
) -> None:
    headers = {**operator, "Content-Type": content_type}
    response = await client.post(UPLOAD, headers=headers, content=content)
    assert_error(response, 400, "invalid_form")


async def test_two_files_in_one_form_are_refused(
    client: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    files = [("image", ("a.png", picture("PNG"), "image/png"))] * 2
    response = await client.post(UPLOAD, headers=operator, files=files)
    assert_error(response, 400, "invalid_form")


async def test_a_body_that_is_not_multipart_is_refused(
    client: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    response = await client.post(UPLOAD, headers=operator, json={"image": "aGVsbG8="})
    assert_error(response, 415, "unsupported_media_type")


# serving


async def test_an_unknown_name_is_not_found(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get(f"/uploads/{tenant.account_id}/{'A' * 22}.png")
    assert_error(response, 404, "image_not_found")


async def test_an_image_is_not_reachable_under_another_accounts_path(
    client: httpx.AsyncClient, operator: dict[str, str], other_tenant: Tenant
) -> None:
    url = await uploaded_url(client, operator, picture("PNG"))
    name = url.rsplit("/", 1)[1]
    response = await client.get(f"/uploads/{other_tenant.account_id}/{name}")
    assert_error(response, 404, "image_not_found")


async def test_paths_outside_the_stored_images_are_not_served(
    client: httpx.AsyncClient, operator: dict[str, str], tenant: Tenant, settings: Settings
) -> None:
    url = await uploaded_url(client, operator, picture("PNG"))
    name = url.rsplit("/", 1)[1]
    folder = settings.data_dir / "uploads" / tenant.account_id
    # Files in the account's folder that save() cannot have produced.
    (folder / "notes.txt").write_text("private")
    (folder / f".upload-{name}").write_bytes(picture("PNG"))
    secret = (settings.data_dir / "secret_key").read_text()
    account = tenant.account_id
    attempts = [
        f"/uploads/{account}/..%2F..%2Fsecret_key",
        f"/uploads/{account}/%2E%2E%2F%2E%2E%2Fsecret_key",
        f"/uploads/{account}/..%252F..%252Fsecret_key",
        f"/uploads/{account}/..%5C..%5Csecret_key",
        "/uploads/%2E%2E/secret_key",
        "/uploads/..%2F..%2F/secret_key",
        f"/uploads/..%2F{account}/{name}",
        f"/uploads/{account}%2F..%2F{account}/{name}",
        f"/uploads/{account}/notes.txt",
        f"/uploads/{account}/.upload-{name}",
        f"/uploads/{account}/{name}%00.txt",
        f"/uploads/{account}/{name.upper()}",
    ]
    for path in attempts:
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.json()["success"] is False, path
        assert secret not in response.text
    assert (await client.get(f"/uploads/{account}/{name}")).status_code == 200


# the store and the setting


BAD_ACCOUNT_IDS = ("..", "../other", "a/b", "", ".", "a\\b", "a\0b", "a" * 65)


async def test_the_store_refuses_account_ids_that_are_not_one_path_component(
    tmp_path: Path,
) -> None:
    store = ImageStore(tmp_path / "images", max_bytes=MAX_IMAGE_BYTES)
    for account_id in BAD_ACCOUNT_IDS:
        with pytest.raises(ValueError, match="not an account id"):
            await store.save(account_id, picture("PNG"))
    assert not store.root.exists()


def test_the_store_finds_only_names_it_can_have_produced(tmp_path: Path) -> None:
    store = ImageStore(tmp_path, max_bytes=MAX_IMAGE_BYTES)
    name = f"{'A' * 22}.png"
    assert store.path_for("acct", name) == tmp_path / "acct" / name
    for account_id in BAD_ACCOUNT_IDS:
        assert store.path_for(account_id, name) is None
    for bad in ("..", f"{'A' * 21}.png", f"{'A' * 22}.svg", f"{'A' * 22}.PNG", f"../{name}"):
        assert store.path_for("acct", bad) is None


def test_the_image_limit_is_read_from_the_environment(tmp_path: Path) -> None:
    base = {"LIVEOP_DATA_DIR": str(tmp_path)}
    assert load_settings(base).max_image_bytes == DEFAULT_MAX_IMAGE_BYTES == 5 * 1024 * 1024
    assert load_settings({**base, "LIVEOP_MAX_IMAGE_BYTES": "1000"}).max_image_bytes == 1000
    for bad in ("0", "-5", "5MB"):
        with pytest.raises(SettingsError, match="LIVEOP_MAX_IMAGE_BYTES"):
            load_settings({**base, "LIVEOP_MAX_IMAGE_BYTES": bad})
