"""Parsed blocks to chunks: fixed-size token windows, or recursive by structure.

Tokens here are words and punctuation marks (`\\w+|[^\\w\\s]`), a model-independent count
close to a WordPiece tokenizer's on English prose; sizes are kept under the embedding model's
input limit (MiniLM reads 256 word pieces) by the defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from llmdeck.knowledge.parsing import Block

SEPARATOR = "\n\n"
_TOKEN = re.compile(r"\w+|[^\w\s]")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


class ChunkingConfig(BaseModel):
    """How a knowledge base cuts documents into chunks."""

    strategy: Literal["recursive", "fixed"] = Field(
        default="recursive",
        description="recursive: by headings, paragraphs, then sentences; fixed: token windows.",
    )
    chunk_size: int = Field(default=180, ge=16, le=2000, description="Tokens per chunk, at most.")
    chunk_overlap: int = Field(default=30, ge=0, le=1000, description="Tokens shared by windows.")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingConfig:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        return self


@dataclass
class Piece:
    text: str
    start: int
    end: int
    token_count: int
    page: int | None = None
    headings: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


def document_text(blocks: list[Block]) -> tuple[str, list[int]]:
    """The document's text as stored (blocks joined), and each block's start offset."""
    starts, position = [], 0
    for block in blocks:
        starts.append(position)
        position += len(block.text) + len(SEPARATOR)
    return SEPARATOR.join(b.text for b in blocks), starts


def count_tokens(text: str) -> int:
    return sum(1 for _ in _TOKEN.finditer(text))


def chunk(blocks: list[Block], config: ChunkingConfig) -> list[Piece]:
    text, starts = document_text(blocks)
    if config.strategy == "fixed":
        return _fixed(text, blocks, starts, config)
    return _recursive(text, blocks, starts, config)


def _windows(
    text: str, start: int, end: int, size: int, overlap: int
) -> list[tuple[int, int, int]]:
    """(start, end, tokens) windows of at most `size` tokens over text[start:end]."""
    spans = [(m.start() + start, m.end() + start) for m in _TOKEN.finditer(text[start:end])]
    windows = []
    step = max(1, size - overlap)
    for first in range(0, len(spans), step):
        group = spans[first : first + size]
        windows.append((group[0][0], group[-1][1], len(group)))
        if first + size >= len(spans):
            break
    return windows


def _block_at(starts: list[int], offset: int) -> int:
    lo, hi = 0, len(starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if starts[mid] <= offset:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _fixed(text: str, blocks: list[Block], starts: list[int], config: ChunkingConfig):
    pieces = []
    for start, end, tokens in _windows(text, 0, len(text), config.chunk_size, config.chunk_overlap):
        block = blocks[_block_at(starts, start)]
        pieces.append(
            Piece(
                text[start:end],
                start,
                end,
                tokens,
                page=block.page,
                headings=block.headings,
                metadata=dict(block.metadata),
            )
        )
    return pieces


def _recursive(text: str, blocks: list[Block], starts: list[int], config: ChunkingConfig):
    """Whole blocks while they fit, merged with neighbours under the same heading and page;
    a block too big is cut at sentences, and a sentence too big into token windows."""
    size = config.chunk_size
    pieces: list[Piece] = []
    for block, start in zip(blocks, starts, strict=True):
        for s, e, tokens in _split_block(text, start, start + len(block.text), config):
            last = pieces[-1] if pieces else None
            if (
                last is not None
                and not block.atomic
                and not last.metadata.get("_atomic")
                and last.headings == block.headings
                and last.page == block.page
                and last.token_count + tokens <= size
            ):
                last.end, last.token_count = e, last.token_count + tokens
                last.text = text[last.start : e]
                continue
            meta = dict(block.metadata)
            if block.atomic:
                meta["_atomic"] = True
            pieces.append(Piece(text[s:e], s, e, tokens, block.page, block.headings, meta))
    for piece in pieces:
        piece.metadata.pop("_atomic", None)
    return pieces


def _split_block(text: str, start: int, end: int, config: ChunkingConfig):
    size = config.chunk_size
    tokens = count_tokens(text[start:end])
    if tokens <= size:
        return [(start, end, tokens)]
    parts: list[tuple[int, int, int]] = []
    cursor = start
    sentences = []
    for match in _SENTENCE.finditer(text[start:end]):
        sentences.append((cursor, start + match.start()))
        cursor = start + match.end()
    sentences.append((cursor, end))
    for s, e in sentences:
        n = count_tokens(text[s:e])
        if n > size:
            parts.extend(_windows(text, s, e, size, config.chunk_overlap))
        elif parts and parts[-1][2] + n <= size and parts[-1][1] <= s:
            ps, _, pn = parts[-1]
            parts[-1] = (ps, e, pn + n)
        else:
            parts.append((s, e, n))
    return parts
