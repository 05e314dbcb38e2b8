"""Matching hashed files in batches: each distinct query once per matcher call.

A matcher that fails becomes :class:`MatcherError`, whose text never quotes
the matcher's own message unless it is one of ours (ours carry no hash values).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from crypto.errors import HashfedError
from node.local.errors import MatcherError
from node.local.hashing import FileHashes
from node.local.matcher import ORIENTED, Hit, Matcher, Query, tagged_queries
from node.local.results import FileResult

__all__ = ["Batcher"]


class Batcher:
    """Collects hashed files and matches them in batches of distinct queries."""

    def __init__(
        self, matcher: Matcher, *, batch_size: int, max_distance: int, state_file: Path
    ) -> None:
        self.matcher = matcher
        self.batch_size = batch_size
        self.max_distance = max_distance
        self.state_file = state_file
        self.pending: list[FileHashes] = []
        self.results: list[FileResult] = []

    def add(self, h: FileHashes) -> None:
        if not h.hashed:
            return
        self.pending.append(h)
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        index: dict[Query, int] = {}
        per_file: list[list[tuple[int, str | None]]] = []
        for h in batch:
            per_file.append([(index.setdefault(q, len(index)), v) for q, v in tagged_queries(h)])
        queries = list(index)
        try:
            answers = self.matcher.match(queries, max_distance=self.max_distance)
        except HashfedError as exc:  # our own errors never carry hash values
            raise MatcherError(reason=exc.message, state_file=self.state_file) from None
        except Exception as exc:
            # Foreign exception text may quote a request or body: name its type only.
            raise MatcherError(
                reason=f"{type(exc).__name__} from the matcher", state_file=self.state_file
            ) from None
        if not isinstance(answers, list) or len(answers) != len(queries):
            raise MatcherError(
                reason="the matcher answered a different number of queries than it was asked",
                state_file=self.state_file,
            )
        for h, qidx in zip(batch, per_file, strict=True):
            hits: dict[Hit, None] = {}
            for i, variant in qidx:
                for hit in answers[i]:
                    hits.setdefault(replace(hit, variant=variant), None)
            ordered = sorted(hits, key=_hit_order)
            self.results.append(FileResult(h, tuple(ordered)))


def _hit_order(hit: Hit) -> tuple[int, str, str, str, bool]:
    # The as-stored hash first when both variants hit the same entry equally.
    return (hit.distance, hit.list_name, hit.hash_type, hit.category, hit.variant == ORIENTED)
