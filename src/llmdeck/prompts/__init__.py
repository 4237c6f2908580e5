"""Prompts: versioned chat-message templates, labels that point at versions, and chains."""
