"""Traces and spans, and the batching writer that records them off the request path."""
