"""Subscribers, preferences, import/export, unsubscribe tokens."""
