"""The `llmdeck` command, composed from each domain's commands."""
