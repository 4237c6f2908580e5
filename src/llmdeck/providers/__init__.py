"""The provider interface, the local models and OpenAI-compatible upstreams."""
