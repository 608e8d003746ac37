"""Rendering is pure: data in, strings out. No database, no network."""
