"""The node: one object that holds settings, store, signing key and matcher.

The CLI and the API both act through it, so an add over HTTPS and an add on
the command line do exactly the same thing, audit record and index update
included. Index updates run right after the transaction that made them
commits, which is what makes a hash matchable at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from config import NodeSettings
from crypto.checkpoint import CheckpointSigner, list_origin, verify_checkpoint
from crypto.errors import HashfedError, InputError
from crypto.keys import NoteVerifier
from node.datadir import load_checkpoint_signer, protect_data_dir
from node.log import lists, writer
from node.log.add_queue import AddQueue
from node.log.gc_pause import gc_paused
from node.log.hashes import get_type, parse_category, parse_hash
from node.log.hashfile import read_hash_file
from node.log.lists import AppendResult, Committed
from node.log.verify import PARALLEL_FROM, Verifier, VerifyResult
from node.log.vics import CategoryMap, looks_like_vics, read_vics
from node.store import CheckpointRow, ListRow, Store

# Adds up to this many hashes (one API batch is at most limits.max_batch)
# may share a transaction with others; larger ones are imports and go alone.
_GROUPED_ADD_MAX = 10_000

# Called with each commit that appended entries, after it committed.
ChangeListener = Callable[[Committed], None]


class Node:
    """A running node's state. Create with :meth:`open`; close when done."""

    def __init__(self, settings: NodeSettings, store: Store, signer: CheckpointSigner) -> None:
        self.settings = settings
        self.store = store
        self.checkpoint_signer = signer
        self.signer = signer.log
        self.cosigner = signer.cosigner
        self._listeners: list[ChangeListener] = []
        self._adds = AddQueue(store, node_id=settings.node_id)
        # Lists this node owns, by name, for the write path: id, owner and
        # name never change and lists are never deleted, so a hit is exact.
        self._owned: dict[str, ListRow] = {}

    @classmethod
    def open(cls, settings: NodeSettings, *, migrate: bool = True) -> Node:
        signer = load_checkpoint_signer(settings)
        if not settings.database_url:
            protect_data_dir(settings)  # before SQLite creates or opens its files
        store = Store.open(
            settings.effective_database_url,
            migrate=migrate,
            write_lock_timeout=settings.limits.write_lock_timeout_seconds,
        )
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
        """Call ``listener`` with every commit that appended entries, after it commits."""
        self._listeners.append(listener)

    def emit(self, batch: Committed) -> None:
        """Tell this process's listeners (its matcher) of a commit the writer made."""
        if batch.end > batch.start or batch.changes:
            for listener in self._listeners:
                listener(batch)

    # --- audit of what is not a list change -------------------------------------------

    def audit(
        self, *, actor: str, action: str, target: str = "", count: int = 0, detail: dict[str, Any]
    ) -> None:
        """One audit record of an action that changes no list (refusals, principals, tokens).

        List changes carry their own record, in their transaction (the writer).
        """
        self.store.append_audit(
            actor=actor, action=action, target=target, count=count, detail=detail
        )

    # --- keys -------------------------------------------------------------------------

    def verifiers_for(self, owner: str) -> list[NoteVerifier]:
        """The keys trusted to sign ``owner``'s lists."""
        if owner == self.node_id:
            return self.checkpoint_signer.verifiers()
        out: list[NoteVerifier] = []
        for peer in self.settings.peers:
            if peer.node_id == owner:
                out.extend(NoteVerifier.from_verifier_key(k) for k in peer.signing_keys)
        # owners of relayed lists that are not our peers
        for trusted in self.settings.trusted_owners:
            if trusted.node_id == owner:
                out.extend(NoteVerifier.from_verifier_key(k) for k in trusted.signing_keys)
        return out

    # --- lists --------------------------------------------------------------------------

    def get_list(self, full_name: str) -> ListRow:
        return lists.get_list(self.store, full_name)

    def _owned_row(self, full_name: str) -> ListRow:
        """The list to append to (its id, owner and name; other fields may be stale)."""
        row = self._owned.get(full_name)
        if row is None:
            row = self.get_list(full_name)
            if row.local and row.owner == self.node_id:
                self._owned[full_name] = row
        return row

    def create_list(
        self,
        full_name: str,
        *,
        label: str,
        description: str = "",
        actor: str,
        kind: str = "block",
        allow_distance: int = 0,
    ) -> ListRow:
        return writer.create_local(
            self.store,
            node_id=self.node_id,
            full_name=full_name,
            label=label,
            description=description,
            actor=actor,
            kind=kind,
            allow_distance=allow_distance,
        )

    def add(
        self,
        full_name: str,
        items: Sequence[tuple[str, str, str]],
        *,
        actor: str,
        action: str = "list.add",
    ) -> AppendResult:
        """Add canonical ``(type, value, category)`` items (duplicates skipped).

        Small adds that arrive together share one transaction (group commit,
        :mod:`node.log.add_queue`); large ones run on their own.
        """
        row = self._owned_row(full_name)
        if len(items) <= _GROUPED_ADD_MAX:
            result = self._adds.add(row, items, actor=actor, action=action)
        else:
            result = writer.add_hashes(
                self.store,
                node_id=self.node_id,
                row=row,
                items=items,
                actor=actor,
                action=action,
            )
        self.emit(result.committed)
        return result

    def add_raw(
        self,
        full_name: str,
        raw: Sequence[tuple[str, str, str]],
        *,
        actor: str,
        field_names: tuple[str, str, str] | None = None,
    ) -> AppendResult:
        """Parse then add ``(type, value, category)`` as typed by a user.

        Errors name ``hashes[i].value`` (the API's fields), or ``field_names``
        (a command's arguments, e.g. ``("TYPE", "VALUE", "--category")``).
        """
        items = []
        for i, (t, v, c) in enumerate(raw):
            if field_names is None:
                htype, value = parse_hash(t, v, where=f"hashes[{i}]")
                items.append((htype, value, parse_category(c, where=f"hashes[{i}].category")))
            else:
                parsed = get_type(t, where=field_names[0])
                value = parsed.parse(v, where=field_names[1])
                items.append((parsed.name, value, parse_category(c, where=field_names[2])))
        return self.add(full_name, items, actor=actor)

    def remove(
        self,
        full_name: str,
        raw: Sequence[tuple[str, str]],
        *,
        actor: str,
        field_names: tuple[str, str] | None = None,
    ) -> AppendResult:
        keys = [
            parse_hash(t, v, where=f"hashes[{i}]")
            if field_names is None
            else (
                (h := get_type(t, where=field_names[0])).name,
                h.parse(v, where=field_names[1]),
            )
            for i, (t, v) in enumerate(raw)
        ]
        result = writer.remove_hashes(
            self.store,
            node_id=self.node_id,
            row=self._owned_row(full_name),
            items=keys,
            actor=actor,
        )
        self.emit(result.committed)
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
        categories: CategoryMap | None = None,
        read_progress: Callable[[int], None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> AppendResult:
        """Import a file in one transaction, read as it is written: all of it, or nothing.

        ``fmt`` is csv, text or vics (Project VIC JSON; ``categories`` maps its
        codes). ``read_progress`` hears bytes read, ``progress`` entries
        appended. Memory holds a page of the file, not the file
        (:mod:`node.log.writer.imports`).
        """
        row = self._owned_row(full_name)  # an unknown list fails before a large file is read
        with gc_paused():
            items: Iterable[tuple[str, str, str]]
            if fmt == "vics" or (fmt is None and looks_like_vics(path)):
                items = read_vics(path, categories=categories, progress=read_progress)
            else:
                items = read_hash_file(
                    path,
                    fmt=fmt,
                    default_type=default_type,
                    default_category=default_category,
                    progress=read_progress,
                )
            result = writer.import_items(
                self.store,
                node_id=self.node_id,
                row=row,
                items=items,
                actor=actor,
                on_written=progress,
            )
        self.emit(result.committed)
        return result

    def publish(self, full_name: str, *, actor: str) -> CheckpointRow:
        return writer.publish(
            self.store,
            node_id=self.node_id,
            row=self.get_list(full_name),
            signer=self.checkpoint_signer,
            actor=actor,
        )

    def heartbeat(self, *, now: int) -> list[str]:
        """Re-sign every owned, published, unfrozen list whose newest checkpoint is due."""
        done = []
        for row in self.store.all_lists():
            if not row.local or row.owner != self.node_id or row.frozen_reason is not None:
                continue
            # A read first: the writer takes the list's lock, and most lists
            # are not due on most ticks. It checks again under the lock.
            latest = self.store.latest_checkpoint(list_id=row.id)
            if latest is None:
                continue
            # A note from before cosignatures (or older keys) is re-signed at once.
            stale_keys = not self.signed_with_current_keys(row, latest.note)
            if not stale_keys and now - latest.timestamp < self.settings.heartbeat_seconds:
                continue
            if writer.heartbeat(
                self.store,
                node_id=self.node_id,
                row=row,
                signer=self.checkpoint_signer,
                now=now,
                every=0 if stale_keys else self.settings.heartbeat_seconds,
            ):
                done.append(row.full_name)
        return done

    def signed_with_current_keys(self, row: ListRow, note: str) -> bool:
        """Whether our note for ``row`` is signed and dated by this node's current keys."""
        try:
            verify_checkpoint(
                note,
                origin=list_origin(row.owner, row.name),
                verifiers=self.checkpoint_signer.verifiers(),
            )
        except HashfedError:
            return False
        return True

    def resign(self, full_name: str, *, actor: str, now: int) -> CheckpointRow:
        """Re-sign an owned list's newest published tree now (new keys, new format).

        Raises:
            NotOwnerError: not this node's list.
            InputError: the list was never published.
        """
        row = self._owned_row(full_name)
        if not writer.heartbeat(
            self.store,
            node_id=self.node_id,
            row=row,
            signer=self.checkpoint_signer,
            now=now,
            every=0,
            actor=actor,
        ):
            raise InputError("the list has no published checkpoint to re-sign", where=full_name)
        latest = self.store.latest_checkpoint(list_id=row.id)
        assert latest is not None
        return latest

    def unfreeze(self, full_name: str, *, actor: str) -> ListRow:
        """Take updates for a list frozen after a fork again (its evidence is kept).

        Raises:
            InputError: the list is not frozen.
        """
        row = self.get_list(full_name)
        if row.frozen_reason is None:
            raise InputError(f"{full_name} is not frozen", where="name")
        writer.set_frozen(self.store, row=row, reason=None, actor=actor)
        return self.get_list(full_name)

    def verify(
        self,
        full_name: str | None = None,
        *,
        parallel_from: int = PARALLEL_FROM,
        progress: Callable[[int], None] | None = None,
    ) -> list[VerifyResult]:
        """Verify one list, or every list; see :mod:`node.log.verify`.

        ``progress`` hears each list's entry count once it is verified.
        """
        rows = [self.get_list(full_name)] if full_name else self.store.all_lists()
        results = []
        with Verifier(self.store, parallel_from=parallel_from) as verifier:
            for r in rows:
                results.append(verifier.verify(r, self.verifiers_for(r.owner)))
                if progress is not None:
                    progress(results[-1].size)
        return results

    def content(self, full_name: str) -> Iterator[tuple[str, str, str]]:
        """Current ``(type, value, category)`` of a list, streamed in pages."""
        row = self.get_list(full_name)
        for page in self.store.iter_content(list_ids=[row.id]):
            for _lid, t, v, c in page:
                yield t, v, c
