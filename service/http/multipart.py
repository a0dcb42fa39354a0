"""Stream a multipart/form-data dataset upload into an UploadSpool as it arrives.

The body is never held in memory or spooled elsewhere first, so an upload over the
limit is refused after ``max_upload_bytes`` bytes, not after the whole body.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import (
    MAX_BOUNDARY_LENGTH,
    MultipartParser,
    MultipartState,
    parse_options_header,
)

from service.http.problems import Problem
from thaw.settings import Settings
from thaw.spec import plain_text
from thaw.uploads import UploadSpool, UploadTooLarge

FILE_FIELD = "file"
NAME_FIELD = "name"
_FIELD_MAX = 1000
_HEADER_MAX = 16 * 1024
_ENVELOPE_SLACK = 64 * 1024


@dataclass
class UploadForm:
    spool: UploadSpool | None = None
    filename: str | None = None
    name: str | None = None


@dataclass
class _State:
    settings: Settings
    form: UploadForm = field(default_factory=UploadForm)
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    headers: dict[str, bytes] = field(default_factory=dict)
    part: str | None = None
    value: bytearray = field(default_factory=bytearray)
    header_bytes: int = 0

    def on_part_begin(self) -> None:
        self.headers.clear()
        self.part = None
        self.value.clear()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_field.decode("latin-1").lower()] = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get("content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == FILE_FIELD:
            if self.form.spool is not None:
                raise _bad("send one 'file' part only")
            raw = options.get(b"filename")
            if not raw:
                raise _bad("the 'file' part needs a filename such as digits.zip")
            self.form.filename = _plain(
                "the 'file' part's filename", raw.decode("utf-8", "replace")
            )
            self.form.spool = UploadSpool(self.settings)
        elif name != NAME_FIELD:
            raise _bad(f"unknown form field {name!r}; send 'file' and optionally 'name'")
        self.part = name

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part == FILE_FIELD:
            assert self.form.spool is not None
            self.form.spool.write(data[start:end])
            return
        self.value += data[start:end]
        if len(self.value) > _FIELD_MAX:
            raise _bad(f"the 'name' field is longer than {_FIELD_MAX} bytes")

    def on_part_end(self) -> None:
        if self.part == NAME_FIELD:
            self.form.name = _plain("the 'name' field", self.value.decode("utf-8", "replace"))
        elif self.part == FILE_FIELD and self.form.spool is not None:
            self.form.spool.close()

    def _count(self, n: int) -> None:
        self.header_bytes += n
        if self.header_bytes > _HEADER_MAX:
            raise _bad("the multipart part headers are too large")


def _plain(what: str, value: str) -> str:
    try:
        plain_text(value)
    except ValueError as exc:
        raise _bad(f"{what} {exc}") from exc
    return value


def _bad(message: str) -> Problem:
    return Problem(422, message, code="invalid_upload", title="Invalid upload")


async def receive_upload(request: Request, settings: Settings) -> UploadForm:
    """Parse the request body; the caller owns (and must discard) the returned spool."""
    content_type, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise Problem(
            415,
            "send the dataset as multipart/form-data with a 'file' part",
            code="unsupported_media_type",
        )
    if len(boundary) > MAX_BOUNDARY_LENGTH:
        raise _bad(
            f"the multipart boundary is {len(boundary)} characters; at most "
            f"{MAX_BOUNDARY_LENGTH} (RFC 2046 asks for 70 or fewer)"
        )
    declared = request.headers.get("content-length")
    if (
        declared
        and declared.isdigit()
        and int(declared) > settings.max_upload_bytes + _ENVELOPE_SLACK
    ):
        raise UploadTooLarge(settings.max_upload_bytes)
    state = _State(settings)
    parser = MultipartParser(
        boundary,
        callbacks={  # type: ignore[arg-type]
            "on_part_begin": state.on_part_begin,
            "on_part_data": state.on_part_data,
            "on_part_end": state.on_part_end,
            "on_header_field": state.on_header_field,
            "on_header_value": state.on_header_value,
            "on_header_end": state.on_header_end,
            "on_headers_finished": state.on_headers_finished,
        },
    )
    try:
        async for chunk in _timed(request, settings.upload_read_timeout_seconds):
            parser.write(chunk)
        parser.finalize()
        if parser.state != MultipartState.END:
            raise _bad(
                "the multipart body ends before its closing boundary; send the whole body, "
                f"ending with --{boundary.decode('latin-1')}--"
            )
    except MultipartParseError as exc:
        _discard(state.form)
        raise _bad(f"the multipart body is malformed: {exc}") from exc
    except BaseException:
        _discard(state.form)
        raise
    if state.form.spool is None:
        raise _bad("no 'file' part; send the dataset file in a form field named 'file'")
    return state.form


async def _timed(request: Request, timeout_s: float) -> AsyncIterator[bytes]:
    """The body's chunks; a client that sends nothing for ``timeout_s`` gets a 408."""
    chunks = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), timeout_s)
        except StopAsyncIteration:
            return
        except TimeoutError as exc:
            raise Problem(
                408,
                f"the upload sent nothing for {timeout_s:g} s (THAW_UPLOAD_READ_TIMEOUT_SECONDS); "
                "send the body without pausing",
                code="upload_timeout",
                headers={"Connection": "close"},
            ) from exc
        yield chunk


def _discard(form: UploadForm) -> None:
    if form.spool is not None:
        form.spool.discard()
