"""The node: one object that holds settings, store, signing key and matcher.

The CLI and the API both act through it, so an add over HTTPS and an add on
the command line do exactly the same thing, audit record and index update
included. Index updates run right after the transaction that made them
commits, which is what makes a hash matchable at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from config import NodeSettings
from crypto.keys import NoteSigner, NoteVerifier
from node.datadir import load_signer, protect_data_dir
from node.log import lists
from node.log.hashes import parse_category, parse_hash
from node.log.hashfile import read_hash_file
from node.log.lists import AppendResult, ContentChange
from node.log.verify import PARALLEL_FROM, Verifier, VerifyResult
from node.store import CheckpointRow, ListRow, Store

ChangeListener = Callable[[Sequence[ContentChange]], None]


class Node:
    """A running node's state. Create with :meth:`open`; close when done."""

    def __init__(self, settings: NodeSettings, store: Store, signer: NoteSigner) -> None:
        self.settings = settings
        self.store = store
        self.signer = signer
        self._listeners: list[ChangeListener] = []

    @classmethod
    def open(cls, settings: NodeSettings, *, migrate: bool = True) -> Node:
        signer = load_signer(settings)
        if not settings.database_url:
            protect_data_dir(settings)  # before SQLite creates or opens its files
        store = Store.open(settings.effective_database_url, migrate=migrate)
        if not settings.database_url:
            protect_data_dir(settings)  # a database created just now
        return cls(settings, store, signer)

    def close(self) -> None:
        self.store.close()

    @property
    def node_id(self) -> str:
        return self.settings.node_id

    # --- change propagation -----------------------------------------------------------

    def on_change(self, listener: ChangeListener) -> None:
        """Call ``listener`` with every batch of content changes after it commits."""
        self._listeners.append(listener)

    def emit(self, changes: Sequence[ContentChange]) -> None:
        if changes:
            for listener in self._listeners:
                listener(changes)

    # --- keys -------------------------------------------------------------------------

    def verifiers_for(self, owner: str) -> list[NoteVerifier]:
        """The keys trusted to sign ``owner``'s lists."""
        if owner == self.node_id:
            return [self.signer.verifier()]
        out: list[NoteVerifier] = []
        for peer in self.settings.peers:
            if peer.node_id == owner:
                out.extend(NoteVerifier.from_verifier_key(k) for k in peer.signing_keys)
        # [federation, issue 4] owners of relayed lists that are not our peers
        for trusted in self.settings.trusted_owners:
            if trusted.node_id == owner:
                out.extend(NoteVerifier.from_verifier_key(k) for k in trusted.signing_keys)
        return out

    # --- lists --------------------------------------------------------------------------

    def get_list(self, full_name: str) -> ListRow:
        return lists.get_list(self.store, full_name)

    def create_list(
        self, full_name: str, *, label: str, description: str = "", actor: str
    ) -> ListRow:
        row = lists.create_list(
            self.store,
            node_id=self.node_id,
            full_name=full_name,
            label=label,
            description=description,
        )
        self.store.append_audit(
            actor=actor, action="list.create", target=full_name, detail={"label": label}
        )
        return row

    def add(
        self,
        full_name: str,
        items: Sequence[tuple[str, str, str]],
        *,
        actor: str,
        action: str = "list.add",
        progress: Callable[[int], None] | None = None,
    ) -> AppendResult:
        """Add canonical ``(type, value, category)`` items (duplicates skipped)."""
        result = lists.add_hashes(
            self.store,
            node_id=self.node_id,
            row=self.get_list(full_name),
            items=items,
            actor=actor,
            action=action,
            progress=progress,
        )
        self.emit(result.changes)
        return result

    def add_raw(
        self, full_name: str, raw: Sequence[tuple[str, str, str]], *, actor: str
    ) -> AppendResult:
        """Parse then add ``(type, value, category)`` as typed by a user."""
        items = []
        for i, (t, v, c) in enumerate(raw):
            htype, value = parse_hash(t, v, where=f"hashes[{i}]")
            items.append((htype, value, parse_category(c, where=f"hashes[{i}].category")))
        return self.add(full_name, items, actor=actor)

    def remove(self, full_name: str, raw: Sequence[tuple[str, str]], *, actor: str) -> AppendResult:
        keys = [parse_hash(t, v, where=f"hashes[{i}]") for i, (t, v) in enumerate(raw)]
        result = lists.remove_hashes(
            self.store, node_id=self.node_id, row=self.get_list(full_name), items=keys, actor=actor
        )
        self.emit(result.changes)
        return result

    def import_file(
        self,
        full_name: str,
        path: Path,
        *,
        fmt: str | None = None,
        default_type: str | None = None,
        default_category: str = "",
        actor: str,
        progress: Callable[[int], None] | None = None,
    ) -> AppendResult:
        """Read a whole file, then add it in one transaction (nothing if invalid)."""
        self.get_list(full_name)  # unknown list: fail before reading a large file
        items = read_hash_file(
            path, fmt=fmt, default_type=default_type, default_category=default_category
        )
        return self.add(full_name, items, actor=actor, action="list.import", progress=progress)

    def publish(self, full_name: str, *, actor: str) -> CheckpointRow:
        return lists.publish(
            self.store,
            node_id=self.node_id,
            row=self.get_list(full_name),
            signer=self.signer,
            actor=actor,
        )

    def verify(
        self, full_name: str | None = None, *, parallel_from: int = PARALLEL_FROM
    ) -> list[VerifyResult]:
        """Verify one list, or every list; see :mod:`node.log.verify`."""
        rows = [self.get_list(full_name)] if full_name else self.store.all_lists()
        with Verifier(self.store, parallel_from=parallel_from) as verifier:
            return [verifier.verify(r, self.verifiers_for(r.owner)) for r in rows]

    def content(self, full_name: str) -> Iterator[tuple[str, str, str]]:
        """Current ``(type, value, category)`` of a list, streamed in pages."""
        row = self.get_list(full_name)
        for page in self.store.iter_content(list_ids=[row.id]):
            for _lid, t, v, c in page:
                yield t, v, c
