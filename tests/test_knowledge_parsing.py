"""Parsing and chunking of uploads, hostile files included (no database needed)."""

from __future__ import annotations

import asyncio
import io
import zipfile

import pytest

from llmdeck.core.errors import InvalidRequest
from llmdeck.knowledge import chunking, parsing
from llmdeck.knowledge.chunking import ChunkingConfig

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def make_docx(paragraphs: list[tuple[str, str]]) -> bytes:
    """A minimal Word file: (style, text) paragraphs."""
    body = "".join(
        f'<w:p><w:pPr><w:pStyle w:val="{style}"/></w:pPr><w:r><w:t>{text}</w:t></w:r></w:p>'
        if style
        else f"<w:p><w:r><w:t>{text}</w:t></w:r></w:p>"
        for style, text in paragraphs
    )
    xml = f'<?xml version="1.0"?><w:document xmlns:w="{W}"><w:body>{body}</w:body></w:document>'
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", xml)
    return buffer.getvalue()


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF with one line of Helvetica text per page."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>")
    objects.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, text in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>"
        )
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out


def test_markdown_keeps_heading_paths() -> None:
    md = b"# Guide\n\nIntro text.\n\n## Install\n\nRun pip.\n\n```\n# not a heading\n```\n"
    blocks = parsing.parse("md", md)
    assert [(b.headings, b.text[:9]) for b in blocks] == [
        (("Guide",), "Intro tex"),
        (("Guide", "Install"), "Run pip."),
        (("Guide", "Install"), "```\n# not"),
    ]


def test_html_drops_scripts_and_keeps_headings() -> None:
    html = (
        b"<html><head><title>t</title><script>evil()</script></head><body><h1>Top</h1>"
        b"<p>One &amp; two</p><h2>Sub</h2><p>Three</p></body></html>"
    )
    blocks = parsing.parse(parsing.sniff("page.html", html), html)
    assert [(b.headings, b.text) for b in blocks] == [
        (("Top",), "One & two"),
        (("Top", "Sub"), "Three"),
    ]


def test_pdf_keeps_pages_and_docx_keeps_headings() -> None:
    blocks = parsing.parse("pdf", make_pdf(["Alpha page text", "Beta page text"]))
    assert [(b.page, b.text) for b in blocks] == [(1, "Alpha page text"), (2, "Beta page text")]
    docx = make_docx([("Heading1", "Safety"), ("", "Wear goggles."), ("Heading2", "Eyes")])
    blocks = parsing.parse(parsing.sniff("rules.docx", docx), docx)
    assert [(b.headings, b.text) for b in blocks] == [(("Safety",), "Wear goggles.")]


def test_rows_become_blocks_with_metadata() -> None:
    rows = parsing.parse("csv", b"name,colour\nplum,purple\nlime,green\n")
    assert [(b.text, b.metadata) for b in rows][1] == ("name: lime\ncolour: green", {"row": 2})
    lines = parsing.parse("jsonl", b'{"text": "first", "lang": "en"}\n\n{"text": "second"}\n')
    assert [(b.text, b.metadata) for b in lines] == [
        ("first", {"row": 1, "lang": "en"}),
        ("second", {"row": 3}),
    ]
    with pytest.raises(parsing.ParseError, match="Line 1 is not valid JSON"):
        parsing.parse("jsonl", b"{not json}\n")


def test_sniffing_refuses_binary_mismatch_and_huge_files() -> None:
    with pytest.raises(InvalidRequest, match="a.txt is not a readable text file"):
        parsing.sniff("a.txt", b"\x7fELF\x00\x00\x00binary")
    with pytest.raises(InvalidRequest, match="fake.pdf is not a readable PDF"):
        parsing.sniff("fake.pdf", b"just text")
    with pytest.raises(InvalidRequest, match="content is pdf"):
        parsing.sniff("notes.txt", b"%PDF-1.4 ...")
    with pytest.raises(InvalidRequest, match="the limit is 20 MiB") as info:
        parsing.sniff("big.txt", b"a" * (parsing.MAX_FILE_BYTES + 1))
    assert info.value.code == "file_too_large"
    assert parsing.sniff("noext", b"<!DOCTYPE html><html></html>") == "html"


def test_an_upload_of_unknown_size_over_the_limit_is_larger_than_the_limit() -> None:
    from starlette.datastructures import UploadFile

    # No multipart parser counted this one, so its size is unknown until it is read.
    upload = UploadFile(io.BytesIO(b"a" * (parsing.MAX_FILE_BYTES + 5)), filename="huge.txt")
    with pytest.raises(InvalidRequest) as info:
        asyncio.run(parsing.read_upload(upload))
    assert info.value.message.startswith("huge.txt is larger than 20 MiB; the limit is 20 MiB.")
    small = UploadFile(io.BytesIO(b"hello"), filename="small.txt")
    assert asyncio.run(parsing.read_upload(small)) == b"hello"


def test_hostile_names_are_reduced_to_a_base_name() -> None:
    assert parsing.safe_name("../../etc/passwd.txt") == "passwd.txt"
    assert parsing.safe_name("..\\..\\windows\\win.ini") == "win.ini"
    assert parsing.safe_name("/abs/.hidden.md") == "hidden.md"
    with pytest.raises(InvalidRequest, match="not usable"):
        parsing.safe_name("../..")


def test_zip_bomb_and_malformed_pdf_fail_cleanly() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"<" + b"a" * 60_000_000 + b"/>")
    bomb = buffer.getvalue()
    assert len(bomb) < 200_000
    with pytest.raises(parsing.ParseError, match="zip bomb"):
        parsing.parse(parsing.sniff("bomb.docx", bomb), bomb)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            "word/document.xml",
            '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa">]><d>&a;</d>',
        )
    with pytest.raises(parsing.ParseError, match="entities"):
        parsing.parse("docx", buffer.getvalue())
    with pytest.raises(parsing.ParseError, match="could not be read"):
        parsing.parse("pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog broken")


def test_fixed_chunks_overlap_and_offsets_point_into_the_text() -> None:
    words = " ".join(f"w{i}" for i in range(100))
    blocks = [parsing.Block(words, page=3)]
    config = ChunkingConfig(strategy="fixed", chunk_size=40, chunk_overlap=10)
    pieces = chunking.chunk(blocks, config)
    text, _ = chunking.document_text(blocks)
    assert [p.token_count for p in pieces] == [40, 40, 40]
    assert pieces[1].text.startswith("w30 ")  # 10 tokens shared with the first window
    assert all(text[p.start : p.end] == p.text and p.page == 3 for p in pieces)


def test_recursive_chunks_follow_structure() -> None:
    md = b"# A\n\nShort one.\n\nShort two.\n\n# B\n\n" + b" ".join(
        f"Sentence number {i} is here.".encode() for i in range(30)
    )
    blocks = parsing.parse("md", md)
    pieces = chunking.chunk(blocks, ChunkingConfig(chunk_size=40, chunk_overlap=5))
    text, _ = chunking.document_text(blocks)
    assert pieces[0].text == "Short one.\n\nShort two." and pieces[0].headings == ("A",)
    assert all(p.headings == ("B",) for p in pieces[1:])
    assert all(p.token_count <= 40 and text[p.start : p.end] == p.text for p in pieces)
    assert all(p.text.endswith(".") for p in pieces[1:])  # cut at sentence ends
