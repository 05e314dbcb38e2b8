"""Matching a local scan against a remote node: only hashes travel, over mutual TLS."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from federation.client import AdminClient
from node.local.matcher import Hit, Query

# The API's own batch bound (config Limits.max_batch default).
MAX_BATCH = 10_000


class RemoteScanMatcher:
    """:class:`node.local.matcher.Matcher` that asks a node's ``POST /api/v1/match``."""

    def __init__(
        self,
        url: str,
        *,
        cert_file: Path | None,
        key_file: Path | None,
        ca_files: Sequence[Path] = (),
        pinned_cert_files: Sequence[Path] = (),
        token: str | None = None,
    ) -> None:
        self.description = url
        self._client = AdminClient(
            url,
            cert_file=cert_file,
            key_file=key_file,
            ca_files=ca_files,
            pinned_cert_files=pinned_cert_files,
            token=token,
        )

    def close(self) -> None:
        self._client.close()

    def match(self, queries: Sequence[Query], *, max_distance: int) -> list[list[Hit]]:
        out: list[list[Hit]] = [[] for _ in queries]
        for start in range(0, len(queries), MAX_BATCH):
            chunk = queries[start : start + MAX_BATCH]
            body = {
                "hashes": [{"type": q.type, "value": q.value} for q in chunk],
                "max_distance": max_distance,
            }
            answer = self._client.request("POST", "/api/v1/match", json=body)
            for result in answer["results"]:
                out[start + result["index"]] = [
                    Hit(h["list"], h["owner"], h["category"], h["type"], h["distance"])
                    for h in result["hits"]
                ]
        return out
