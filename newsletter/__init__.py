"""newsletter: compile a news site's digest by tag and deliver it by email."""

__version__ = "0.1.0"
