"""Uploaded files to structured text: sniffing, limits, and one parser per format.

Every parser returns blocks (a paragraph, a heading's body, a table row) that keep their page
and heading path, so chunks can say where they came from. Hostile input is bounded: sizes
and counts are checked before work, a docx's declared and actual expansion is capped, and a
parser's own failure becomes a `ParseError` that names the problem.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import PurePath
from typing import Any
from xml.etree import ElementTree

from llmdeck.core.errors import InvalidRequest

MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_TEXT_CHARS = 5_000_000  # parsed text per document
MAX_PDF_PAGES = 2000
MAX_ROWS = 100_000
MAX_DOCX_UNCOMPRESSED = 50 * 1024 * 1024
MAX_DOCX_MEMBERS = 2000
MAX_DOCX_RATIO = 200  # a real document.xml compresses ~10x; bombs compress ~1000x

CONTENT_TYPES = {
    "txt": "text/plain",
    "md": "text/markdown",
    "html": "text/html",
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "csv": "text/csv",
    "jsonl": "application/jsonl",
}
EXTENSIONS = {
    ".txt": "txt",
    ".text": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
SUPPORTED = "txt, md, html, pdf, docx, csv, jsonl"


class ParseError(InvalidRequest):
    """The file could not be read as its format; the message says why."""


@dataclass
class Block:
    text: str
    page: int | None = None
    headings: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    # Rows (csv/jsonl) are never merged with their neighbours when chunking.
    atomic: bool = False


def safe_name(name: str) -> str:
    """The uploaded file's base name, stripped of directories and odd characters."""
    base = PurePath(name.replace("\\", "/")).name
    base = re.sub(r"[\x00-\x1f\x7f]", "", base).strip().lstrip(".")
    if not base or base in {".", ".."}:
        raise InvalidRequest(
            f"The file name {name!r} is not usable; give a plain name like report.pdf.",
            param="name",
        )
    return base[:255]


def too_large(name: str, size: int | None) -> InvalidRequest:
    """The error for a file over MAX_FILE_BYTES; `size` None when only a prefix was read."""
    limit = f"{MAX_FILE_BYTES / 2**20:.0f} MiB"
    found = f"is {size / 2**20:.1f} MiB" if size is not None else f"is larger than {limit}"
    return InvalidRequest(
        f"{name} {found}; the limit is {limit}. Split it into smaller files.",
        param="file",
        code="file_too_large",
    )


async def read_upload(upload: Any) -> bytes:
    """An uploaded file's bytes (a Starlette UploadFile); one too large is refused with its
    real size, read no further than one byte past the limit."""
    name = upload.filename or "upload"
    # The multipart parser counts what it spooled; a part may also declare its length.
    size = upload.size
    declared = upload.headers.get("content-length", "") if upload.headers else ""
    if size is None and declared.isdigit():
        size = int(declared)
    if size is not None and size > MAX_FILE_BYTES:
        raise too_large(name, size)
    data = await upload.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise too_large(name, None)
    return data


READABLE = {
    "txt": "text file",
    "md": "Markdown file",
    "html": "HTML file",
    "pdf": "PDF",
    "docx": "Word document",
    "csv": "CSV file",
    "jsonl": "JSONL file",
}


def _zip_kind(data: bytes) -> str:
    """docx, zip (an archive of anything else) or damaged; reads the member list only."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except Exception:  # zipfile raises several kinds of error on hostile bytes
        return "damaged"
    return "docx" if "word/document.xml" in names else "zip"


def sniff(name: str, data: bytes) -> str:
    """The format of `data`, from its bytes first and its name second; refuses a mismatch,
    an archive, and a file whose content is not the format its extension names."""
    if len(data) > MAX_FILE_BYTES:
        raise too_large(name, len(data))
    ext = EXTENSIONS.get(PurePath(name).suffix.lower())
    if data.startswith(b"%PDF-"):
        found = "pdf"
    elif data.startswith(b"PK\x03\x04"):
        found = _zip_kind(data)
    elif b"\x00" in data[:8192]:
        found = "binary"
    else:
        found = "text"
    if found in ("zip", "damaged") and ext != "docx":
        raise InvalidRequest(
            f"{name} is a zip archive, which is not supported; upload the files in it "
            f"instead ({SUPPORTED}).",
            param="file",
            code="unsupported_type",
        )
    if found == "binary" and ext is None:
        raise InvalidRequest(
            f"{name} is not a supported file type; upload one of: {SUPPORTED}.",
            param="file",
            code="unsupported_type",
        )
    if found in ("pdf", "docx"):
        if ext not in (None, found):
            raise InvalidRequest(
                f"{name} is named .{ext} but its content is {found}; rename it and retry.",
                param="file",
                code="type_mismatch",
            )
        return found
    if ext in ("pdf", "docx") or found == "binary":
        # The extension names a format we read, but the bytes are not that format.
        why = {
            "zip": "it is a zip archive without word/document.xml",
            "damaged": "its zip structure is damaged",
            "binary": "it holds binary data",
            "text": "it is plain text",
        }[found]
        if ext == "pdf":
            why = "it does not start with %PDF-, as every PDF does"
        raise InvalidRequest(
            f"{name} is not a readable {READABLE[ext]} ({why}); check that it opens in its "
            "usual application, or upload it under the extension of its real format.",
            param="file",
            code="type_mismatch",
        )
    if ext is not None:
        return ext
    head = data[:1024].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "html"
    return "txt"


def parse(kind: str, data: bytes) -> list[Block]:
    """Blocks of text from a file of a sniffed `kind`."""
    parser = _PARSERS[kind]
    try:
        blocks = parser(data)
    except InvalidRequest:
        raise
    except Exception as exc:  # third-party parsers raise anything on hostile input
        raise ParseError(
            f"The {kind} file could not be read ({type(exc).__name__}: {str(exc)[:200]}); "
            "check that it opens in its usual application."
        ) from None
    total = sum(len(b.text) for b in blocks)
    if total > MAX_TEXT_CHARS:
        raise ParseError(
            f"The file holds {total:,} characters of text; the limit is {MAX_TEXT_CHARS:,}."
        )
    return [b for b in blocks if b.text.strip()]


def _decode(data: bytes) -> str:
    text = data.decode("utf-8-sig", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _paragraphs(text: str, headings: tuple[str, ...] = (), page: int | None = None):
    for part in re.split(r"\n\s*\n", text):
        part = part.strip()
        if part:
            yield Block(part, page=page, headings=headings)


def parse_txt(data: bytes) -> list[Block]:
    return list(_paragraphs(_decode(data)))


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def parse_md(data: bytes) -> list[Block]:
    blocks: list[Block] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    fenced = False

    def flush() -> None:
        blocks.extend(_paragraphs("\n".join(lines), tuple(t for _, t in path)))
        lines.clear()

    for line in _decode(data).split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        match = None if fenced else _MD_HEADING.match(line)
        if match:
            flush()
            level = len(match.group(1))
            path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, match.group(2))]
        else:
            lines.append(line)
    flush()
    return blocks


class _HTMLText(HTMLParser):
    BLOCK = {"p", "div", "li", "tr", "br", "section", "article", "pre", "blockquote", "td", "th"}
    SKIP = {"script", "style", "noscript", "template", "head"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.path: list[tuple[int, str]] = []
        self.buffer: list[str] = []
        self.heading: int | None = None
        self.skip = 0

    def _flush(self) -> None:
        text = re.sub(r"\s+", " ", "".join(self.buffer)).strip()
        self.buffer.clear()
        if not text:
            return
        if self.heading is not None:
            level = self.heading
            self.path = [(lvl, t) for lvl, t in self.path if lvl < level] + [(level, text)]
        else:
            self.blocks.append(Block(text, headings=tuple(t for _, t in self.path)))

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self.heading = int(tag[1])
        elif tag in self.BLOCK:
            self._flush()

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self.heading = None
        elif tag in self.BLOCK:
            self._flush()

    def handle_data(self, data):
        if not self.skip:
            self.buffer.append(data)


def parse_html(data: bytes) -> list[Block]:
    parser = _HTMLText()
    parser.feed(_decode(data))
    parser.close()
    parser._flush()
    return parser.blocks


def parse_pdf(data: bytes) -> list[Block]:
    try:
        from pypdf import PdfReader
    except ImportError:  # pragma: no cover - a declared dependency
        from llmdeck.core.errors import MissingDependency

        raise MissingDependency("Reading PDF needs pypdf: run `pip install pypdf`.") from None
    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted:
        raise ParseError("The PDF is encrypted; upload an unencrypted copy.")
    if len(reader.pages) > MAX_PDF_PAGES:
        raise ParseError(f"The PDF has {len(reader.pages)} pages; the limit is {MAX_PDF_PAGES}.")
    blocks: list[Block] = []
    chars = 0
    for number, page in enumerate(reader.pages, start=1):
        text = page.extract_text() or ""
        chars += len(text)
        if chars > MAX_TEXT_CHARS:
            raise ParseError(f"The PDF holds more than {MAX_TEXT_CHARS:,} characters of text.")
        blocks.extend(_paragraphs(_decode(text.encode()), page=number))
    if not blocks:
        raise ParseError("The PDF has no extractable text (is it scanned images?).")
    return blocks


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def parse_docx(data: bytes) -> list[Block]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()
        if len(members) > MAX_DOCX_MEMBERS:
            raise ParseError(f"The docx holds {len(members)} files; that is not a document.")
        try:
            info = archive.getinfo("word/document.xml")
        except KeyError:
            raise ParseError("The file is a zip archive but not a Word document.") from None
        if info.file_size > MAX_DOCX_UNCOMPRESSED or info.file_size > MAX_DOCX_RATIO * max(
            info.compress_size, 1
        ):
            raise ParseError(
                "The docx expands far beyond its size (a zip bomb?); it was not opened."
            )
        # Read at most the limit, whatever the header claims: headers can lie.
        with archive.open(info) as stream:
            xml = stream.read(MAX_DOCX_UNCOMPRESSED + 1)
    if len(xml) > MAX_DOCX_UNCOMPRESSED:
        raise ParseError("The docx expands far beyond its size (a zip bomb?); it was not opened.")
    if b"<!DOCTYPE" in xml[:4096] or b"<!ENTITY" in xml:
        raise ParseError("The docx declares XML entities, which Word never writes; refused.")
    root = ElementTree.fromstring(xml)
    blocks: list[Block] = []
    path: list[tuple[int, str]] = []
    for para in root.iter(f"{_W}p"):
        text = "".join(t.text or "" for t in para.iter(f"{_W}t")).strip()
        if not text:
            continue
        style = para.find(f"{_W}pPr/{_W}pStyle")
        name = style.get(f"{_W}val", "") if style is not None else ""
        match = re.fullmatch(r"(?i)heading\s*([1-9])|title", name)
        if match:
            level = int(match.group(1) or 1)
            path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, text)]
        else:
            blocks.append(Block(text, headings=tuple(t for _, t in path)))
    return blocks


def _row_text(row: dict[str, Any]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in row.items() if v not in (None, ""))


def parse_csv(data: bytes) -> list[Block]:
    reader = csv.DictReader(io.StringIO(_decode(data)))
    blocks = []
    for number, row in enumerate(reader, start=1):
        if number > MAX_ROWS:
            raise ParseError(f"The CSV has more than {MAX_ROWS:,} rows; split it.")
        row = {str(k): v for k, v in row.items() if k is not None}
        blocks.append(Block(_row_text(row), metadata={"row": number}, atomic=True))
    return blocks


def parse_jsonl(data: bytes) -> list[Block]:
    """One block per line; `text`/`content` is the text, other scalar fields its metadata."""
    blocks = []
    for number, line in enumerate(_decode(data).split("\n"), start=1):
        if not line.strip():
            continue
        if len(blocks) >= MAX_ROWS:
            raise ParseError(f"The JSONL file has more than {MAX_ROWS:,} rows; split it.")
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ParseError(f"Line {number} is not valid JSON: {exc.msg}.") from None
        if not isinstance(row, dict):
            raise ParseError(f"Line {number} is not a JSON object.")
        text = row.get("text") or row.get("content")
        meta = {
            k: v
            for k, v in row.items()
            if k not in ("text", "content") and isinstance(v, str | int | float | bool)
        }
        if not isinstance(text, str):
            text = _row_text(row)
        elif isinstance(row.get("title"), str):
            text = f"{row['title']}\n{text}"
        blocks.append(Block(text, metadata={"row": number, **meta}, atomic=True))
    return blocks


_PARSERS = {
    "txt": parse_txt,
    "md": parse_md,
    "html": parse_html,
    "pdf": parse_pdf,
    "docx": parse_docx,
    "csv": parse_csv,
    "jsonl": parse_jsonl,
}
