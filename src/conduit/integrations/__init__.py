"""Adapters between Conduit and other libraries (each needs that library installed)."""
