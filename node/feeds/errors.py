"""The errors of feeds, each with its HTTP status (mapped in api/routes/feeds.py FeedRoute)."""

from __future__ import annotations

from crypto.errors import HashfedError, InputError

__all__ = ["BadRequestError", "CursorError", "ResyncRequiredError", "UnknownFeedError"]


class BadRequestError(InputError):
    """A query parameter that cannot be understood (HTTP 400)."""

    code = "bad_request"


class CursorError(BadRequestError):
    """A cursor or ``next`` token that is malformed, altered or not ours (HTTP 400)."""

    code = "invalid_cursor"

    def __init__(self, *, reason: str) -> None:
        super().__init__(reason, where="cursor")


class UnknownFeedError(InputError):
    """No feed of that name for this caller: unknown and not cleared look alike (HTTP 404)."""

    code = "unknown_feed"

    def __init__(self, *, label: str) -> None:
        self.label = label
        InputError.__init__(self, f"no feed named {label!r}")


class ResyncRequiredError(HashfedError):
    """The cursor no longer fits the feed; pull again without ``since`` (HTTP 410)."""

    code = "resync_required"

    def __init__(self, *, reason: str) -> None:
        super().__init__(f"resync required (pull again without a cursor): {reason}", reason=reason)
