"""Users, projects, roles, API keys and sessions."""
