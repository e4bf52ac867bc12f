"""Images operators send to visitors: recognised by their content, stored under the data directory.

Each image lives at ``<root>/<account_id>/<name>``, where the name is 128 random bits and the
extension of the format Pillow decoded, so the name a client sent never decides anything.
Files a customer's mail carries that are no image (``FileStore``) live beside them under
``<root>/<account_id>/files/<name>``, kept as they came and only ever served for download.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import secrets
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from server.errors import LiveOpError, TooLarge, TooManyRequests, UnsupportedMediaType

# The formats every browser shows in an <img>. SVG is left out on purpose: it can carry script.
_FORMATS = ("PNG", "JPEG", "GIF", "WEBP")
# Pillow reports a camera JPEG with extra pictures in it (EXIF thumbnails, 3D) as MPO.
_EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "MPO": ".jpg", "GIF": ".gif", "WEBP": ".webp"}
MEDIA_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
# Decoding needs 4 bytes a pixel: 40 megapixels is 160 MB, beyond any photo a chat needs.
MAX_PIXELS = 40_000_000
# Images decoded at once in a process: at most 2 x 160 MB of pixels, whatever the number of
# uploads. Their own two threads also keep the allocator to two arenas, where the default
# pool's many threads each kept the memory of a large decode after it ended.
DECODES_AT_ONCE = 2
# Uploads waiting for or in decoding at once, each holding its bytes meanwhile; beyond this
# an upload is refused at once (429, retry in a second) rather than queued without bound.
SAVES_AT_ONCE = 8
NAME_BYTES = 16
# Where stored images are served (server/api/uploads.py), under the server's public URL.
SERVE_ROOT = "/uploads"
_NAME = re.compile(r"[A-Za-z0-9_-]{22}\.(?:png|jpg|gif|webp)")
_FILE_NAME = re.compile(r"[A-Za-z0-9_-]{22}")
FILES = "files"
_ACCOUNT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _not_an_image() -> UnsupportedMediaType:
    return UnsupportedMediaType("not_an_image", "the file is not a PNG, JPEG, GIF or WebP image")


def too_large(max_bytes: int) -> TooLarge:
    return TooLarge("image_too_large", f"the image is larger than {max_bytes} bytes")


def _too_many_pixels() -> TooLarge:
    return TooLarge("image_too_many_pixels", f"the image has more than {MAX_PIXELS} pixels")


def _extension(data: bytes) -> str:
    """The extension of the format ``data`` decodes as, or the reason it is refused."""
    try:
        with Image.open(io.BytesIO(data), formats=_FORMATS) as image:
            if image.width * image.height > MAX_PIXELS:
                raise _too_many_pixels()
            image.verify()
            extension = _EXTENSIONS.get(image.format or "")
        # verify() checks a PNG's chunk checksums and nothing at all of the other formats:
        # only decoding the pixels shows the data is an image, not merely its first bytes.
        with Image.open(io.BytesIO(data), formats=_FORMATS) as image:
            image.load()
    except LiveOpError:
        raise
    except Image.DecompressionBombError:
        raise _too_many_pixels() from None
    except Exception:
        # Pillow signals bad data with many unrelated types (OSError, SyntaxError,
        # struct.error, ValueError...); for untrusted bytes every one means "not an image".
        raise _not_an_image() from None
    if extension is None:
        raise _not_an_image()
    return extension


def _save(folder: Path, data: bytes) -> str:
    return _write(folder, secrets.token_urlsafe(NAME_BYTES) + _extension(data), data)


def _write(folder: Path, name: str, data: bytes) -> str:
    # Written beside its final name and renamed, so a reader never sees half a file.
    folder.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            # The URL goes into a message that is committed durably; the file must be too.
            os.fsync(handle.fileno())
        os.replace(temporary, folder / name)
    except BaseException:
        os.unlink(temporary)
        raise
    return name


class ImageStore:
    def __init__(self, root: Path, *, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._decoders = ThreadPoolExecutor(DECODES_AT_ONCE, thread_name_prefix="image-decode")
        self._saving = 0

    async def save(self, account_id: str, data: bytes) -> str:
        """Checks ``data`` is an image and stores it; returns its new, unguessable name.

        At most DECODES_AT_ONCE images decode at once; beyond SAVES_AT_ONCE saves in
        progress, TooManyRequests."""
        folder = self._folder(account_id)
        if len(data) > self.max_bytes:
            raise too_large(self.max_bytes)
        if self._saving >= SAVES_AT_ONCE:
            raise TooManyRequests("uploads_busy", "too many images are being processed", 1)
        self._saving += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._decoders, _save, folder, data)
        finally:
            self._saving -= 1

    def close(self) -> None:
        self._decoders.shutdown(wait=True, cancel_futures=True)

    def path_for(self, account_id: str, name: str) -> Path | None:
        """Where the image would be; None for any name :meth:`save` cannot have produced."""
        if not _ACCOUNT_ID.fullmatch(account_id) or not _NAME.fullmatch(name):
            return None
        return self.root / account_id / name

    def _folder(self, account_id: str) -> Path:
        return _account_folder(self.root, account_id)


def _account_folder(root: Path, account_id: str) -> Path:
    # Account ids come from our own store, but they become a path component here.
    if not _ACCOUNT_ID.fullmatch(account_id):
        raise ValueError(f"not an account id: {account_id!r}")
    return root / account_id


class FileStore:
    """Any file up to ``max_bytes``, stored as it came under a random name. Its type is never
    trusted: it is served as ``application/octet-stream``, for download only."""

    def __init__(self, root: Path, *, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    async def save(self, account_id: str, data: bytes) -> str:
        """Stores ``data``; returns its new, unguessable name. Raises TooLarge beyond the limit."""
        if len(data) > self.max_bytes:
            raise TooLarge("file_too_large", f"the file is larger than {self.max_bytes} bytes")
        folder = _account_folder(self.root, account_id) / FILES
        return await asyncio.to_thread(_write, folder, secrets.token_urlsafe(NAME_BYTES), data)

    def path_for(self, account_id: str, name: str) -> Path | None:
        """Where the file would be; None for any name :meth:`save` cannot have produced."""
        if not _ACCOUNT_ID.fullmatch(account_id) or not _FILE_NAME.fullmatch(name):
            return None
        return self.root / account_id / FILES / name
