"""The one exception hierarchy of the project.

Every error the library raises on purpose derives from :class:`NewsletterError`.
Subclasses also inherit the fitting builtin (``ValueError``, ``LookupError`` …)
so callers that know nothing of us still catch them sensibly.

Retry code catches :class:`TransientError` only, so a configuration mistake or a
rejected API key can never be swallowed by a retry loop.

The CLI turns any ``NewsletterError`` into one clear line and a non-zero exit;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class NewsletterError(Exception):
    """Root of every error the library raises on purpose."""

    #: process exit code the CLI uses for this error
    exit_code: int = 1

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        self.message = message
        self.where = where
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class ConfigError(NewsletterError, ValueError):
    """The configuration file or environment is wrong. Never retried."""

    exit_code = 2


class InputError(NewsletterError, ValueError):
    """A user-supplied file, argument or record is invalid."""

    exit_code = 2


class NotFoundError(NewsletterError, LookupError):
    """A named edition, subscriber, digest … does not exist."""


class StoreError(NewsletterError):
    """The database could not be opened or migrated."""


class TransitionError(NewsletterError):
    """A row was asked to move to a status its state machine does not allow from
    where it is (see ``newsletter/states.py``). Nothing was changed."""

    def __init__(self, what: str, current: str | None, target: str, **kw: str | None):
        self.what = what
        self.current = current
        self.target = target
        if current is None:
            message = f"a new {what} cannot start as {target}"
        else:
            message = f"{what} is {current}; it cannot become {target}"
        super().__init__(message, **kw)


class SourceError(NewsletterError):
    """An article source failed (network, HTTP, malformed content)."""


class RatesError(NewsletterError):
    """A rates provider failed; the service falls back to the next one."""


class RenderError(NewsletterError):
    """A template could not be rendered or compiled."""


class PreflightError(NewsletterError):
    """An edition failed the preflight checks."""


class DeliveryError(NewsletterError):
    """Delivery through a backend failed."""


class TransientError(DeliveryError):
    """Worth retrying later: timeouts, 429, 5xx, dropped connections."""


class PermanentDeliveryError(DeliveryError):
    """The provider refused some recipients for good (e.g. a 400 naming them)."""

    def __init__(self, message: str, *, rejected: dict[str, str] | None = None, **kw: object):
        super().__init__(message, **kw)  # type: ignore[arg-type]
        #: address -> reason, for the recipients the provider refused
        self.rejected = rejected or {}


class AuthError(DeliveryError):
    """The provider rejected our credentials (401/403): stop the whole send."""


class WebhookError(NewsletterError):
    """A webhook request was refused (bad signature, too old, too big)."""
