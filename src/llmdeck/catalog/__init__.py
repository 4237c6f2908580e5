"""Models known to the platform: provider, upstream name, prices, context window, status."""
