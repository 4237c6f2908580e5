"""llmdeck: an open-source LLMOps platform."""

__version__ = "0.1.0"
