"""The OpenAI-compatible surface and the one request pipeline every LLM call goes through."""
