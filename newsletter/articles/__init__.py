"""Article sources, normalization and selection."""
