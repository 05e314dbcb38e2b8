"""Generate tests/vectors/notes/: signed-note and checkpoint test vectors.

Every vector is deterministic: keys come from fixed seeds (SHA-256 of a label,
or Go's published test key) and Ed25519 signatures are deterministic, so
running this twice writes the same bytes. tests/vectors/test_note_vectors.py
regenerates the vectors in memory, diffs them against the folder, and checks
that hashfed still gives each vector's expected answer.

Usage (rewrites the folder, removing files it no longer generates)::

    .venv/bin/python tests/vectors/generate_notes.py

Files written:

* ``keys.json``   the test keys: name, seed, public key, key id, verifier key
* ``index.json``  one entry per vector: description, which verifier keys are
  trusted, the expected origin, and the expected result (a checkpoint, a note
  text, or the name of the exception class)
* ``<vector>.note``  the exact bytes of each signed note
* ``README.md``   a table of the vectors
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crypto.checkpoint import Checkpoint, format_checkpoint, list_origin, sign_checkpoint
from crypto.cosignature import CosignatureSigner
from crypto.keys import NoteSigner
from crypto.note import MAX_SIGNATURES, sign_note

FOLDER = Path(__file__).resolve().parent / "notes"


# --- keys ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VectorKey:
    label: str
    signer: NoteSigner | CosignatureSigner
    seed: bytes


def _seeded(label: str, name: str, *, cosigner: bool = False) -> VectorKey:
    seed = hashlib.sha256(f"hashfed test vector key: {label}".encode()).digest()
    private = Ed25519PrivateKey.from_private_bytes(seed)
    kind = CosignatureSigner if cosigner else NoteSigner
    return VectorKey(label, kind(name, private), seed)


# golang.org/x/mod/sumdb/note note_test.go:
# "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
_PETER_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]

NODE_A = _seeded("node-a", "hashfed.example/node-a")
NODE_B = _seeded("node-b", "hashfed.example/node-b")
IMPOSTOR = _seeded("impostor", "hashfed.example/node-a")  # node-a's name, another key
# node-a's cosigner key (tlog-cosignature, type 0x04): dates node-a's checkpoints.
NODE_A_CO = _seeded("node-a cosigner", "hashfed.example/node-a", cosigner=True)
# A witness (another node's cosigner key) that the verifiers here do not trust.
WITNESS = _seeded("witness-w", "hashfed.example/node-w", cosigner=True)
PETER = VectorKey(
    "go-peter-neumann",
    NoteSigner("PeterNeumann", Ed25519PrivateKey.from_private_bytes(_PETER_SEED)),
    _PETER_SEED,
)
KEYS = (NODE_A, NODE_A_CO, NODE_B, IMPOSTOR, WITNESS, PETER)

# --- the checkpoints -------------------------------------------------------------------------

ORIGIN = list_origin("node-a", "baseline")
ROOT = hashlib.sha256(b"hashfed test vector root").digest()  # any 32 bytes
EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 6962: the root of the empty tree
TS = 1_700_000_000  # when node-a cosigned
CHECKPOINT = Checkpoint(origin=ORIGIN, size=3, root_hash=ROOT)
TEXT = format_checkpoint(CHECKPOINT)
ROOT_B64 = base64.b64encode(ROOT).decode()
B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@dataclass(frozen=True)
class Vector:
    name: str
    description: str
    note: bytes
    want: dict[str, object]
    trusted: tuple[VectorKey, ...] = (NODE_A, NODE_A_CO)
    origin: str = ORIGIN
    kind: str = "checkpoint"  # or "note": open the note only


def _ok(cp: Checkpoint, timestamp: int = TS) -> dict[str, object]:
    return {
        "checkpoint": {
            "origin": cp.origin,
            "size": cp.size,
            "root_hash": base64.b64encode(cp.root_hash).decode(),
            "timestamp": timestamp,
            "extensions": list(cp.extensions),
        }
    }


def _error(name: str) -> dict[str, object]:
    return {"error": name}


def _log(key: VectorKey) -> NoteSigner:
    assert isinstance(key.signer, NoteSigner)
    return key.signer


def _co(key: VectorKey) -> CosignatureSigner:
    assert isinstance(key.signer, CosignatureSigner)
    return key.signer


def _signed(text: str, *keys: VectorKey) -> bytes:
    """Signed by ``keys`` (log keys), then cosigned by node-a's cosigner key at TS."""
    return (sign_note(text, [_log(k) for k in keys]) + _co(NODE_A_CO).line(text, TS)).encode()


def _sign(cp: Checkpoint, ts: int = TS) -> bytes:
    return sign_checkpoint(cp, _log(NODE_A), cosigner=_co(NODE_A_CO), timestamp=ts).encode()


def _plain_by_cosigner(key: VectorKey, text: str) -> str:
    """A signature line with the cosigner's key ID over the text without the cosignature header."""
    plain = NoteSigner(key.signer.name, Ed25519PrivateKey.from_private_bytes(key.seed))
    blob = bytes(key.signer.key_id) + plain.sign(text.encode())
    return f"— {key.signer.name} {base64.b64encode(blob).decode()}\n"


def _line(key: VectorKey, text: str) -> str:
    if isinstance(key.signer, CosignatureSigner):
        return key.signer.line(text, TS)
    return sign_note(text, [key.signer]).split("\n\n")[-1]


def _flip_signature_bit(line: str, at: int = 4 + 20) -> str:
    dash, name, b64 = line.rstrip("\n").split(" ")
    blob = bytearray(base64.b64decode(b64))
    blob[at] ^= 0x01  # default: inside the Ed25519 signature, after the key id
    return f"{dash} {name} {base64.b64encode(bytes(blob)).decode()}\n"


def _body(*lines: str) -> str:
    return "".join(line + "\n" for line in lines)


def _unknown_lines(count: int) -> str:
    blob = base64.b64encode(bytes(4 + 64)).decode()
    return "".join(f"— unknown.example/{i} {blob}\n" for i in range(count))


def _twin(b64: str) -> str:
    """Another spelling of the same bytes: set a spare bit of the last character."""
    padding = len(b64) - len(b64.rstrip("="))
    last = len(b64) - padding - 1
    return b64[:last] + B64_ALPHABET[B64_ALPHABET.index(b64[last]) ^ 0x01] + b64[last + 1 :]


def _vectors() -> list[Vector]:
    a_line = _line(NODE_A, TEXT)
    co_line = _line(NODE_A_CO, TEXT)
    other_list = Checkpoint("hashfed:node-a/restricted", 3, ROOT)
    with_extensions = Checkpoint(ORIGIN, 3, ROOT, ("witness example.org 9", "x"))
    old_format = Checkpoint(ORIGIN, 3, ROOT, ("timestamp 1600000000",))
    empty = Checkpoint(ORIGIN, 0, EMPTY_ROOT)
    go_text = (
        "If you think cryptography is the answer to your problem,\n"
        "then you don't know what your problem is.\n"
    )
    blank_text = "first paragraph\n\nsecond paragraph\n"
    sig_dash, sig_name, sig_b64 = a_line.rstrip("\n").split(" ")
    malformed_checkpoint = _error("MalformedCheckpointError")
    malformed_note = _error("MalformedNoteError")
    return [
        # --- accepted
        Vector(
            "valid-checkpoint",
            "A checkpoint signed by the list owner (the worked example in PROTOCOL.md).",
            _sign(CHECKPOINT),
            _ok(CHECKPOINT),
        ),
        Vector(
            "valid-empty-tree",
            "Size 0 with the RFC 6962 empty-tree root, SHA-256 of nothing.",
            _sign(empty),
            _ok(empty),
        ),
        Vector(
            "extension-lines-preserved",
            "Extension lines after the root hash are kept, in order.",
            _sign(with_extensions),
            _ok(with_extensions),
        ),
        Vector(
            "unknown-key-ignored",
            "A second signature by a key the verifier does not know is ignored.",
            _signed(TEXT, NODE_B, NODE_A),
            _ok(CHECKPOINT),
        ),
        Vector(
            "same-name-other-key-ignored",
            "A signature under the trusted name but by another key (another key id) is ignored.",
            _signed(TEXT, IMPOSTOR, NODE_A),
            _ok(CHECKPOINT),
        ),
        Vector(
            "hundred-signatures",
            f"{MAX_SIGNATURES} signature lines, the most accepted; the last two are trusted.",
            (TEXT + "\n" + _unknown_lines(MAX_SIGNATURES - 2) + a_line + co_line).encode(),
            _ok(CHECKPOINT),
        ),
        Vector(
            "go-peter-neumann",
            "golang.org/x/mod/sumdb/note's published example note, reproduced from its key.",
            _signed(go_text, PETER),
            {"text": go_text},
            trusted=(PETER,),
            origin="",
            kind="note",
        ),
        Vector(
            "text-with-blank-line",
            "A note text may contain blank lines; the last blank line ends it.",
            _signed(blank_text, NODE_A),
            {"text": blank_text},
            origin="",
            kind="note",
        ),
        # --- signature rejections
        Vector(
            "only-unknown-key",
            "Signed only by a key the verifier does not trust.",
            _signed(TEXT, NODE_B),
            _error("NoTrustedSignatureError"),
        ),
        Vector(
            "only-same-name-other-key",
            "Signed only by another key that uses the trusted key's name.",
            _signed(TEXT, IMPOSTOR),
            _error("NoTrustedSignatureError"),
        ),
        Vector(
            "forged-signature",
            "The trusted key's signature with one bit flipped.",
            (TEXT + "\n" + _flip_signature_bit(a_line) + co_line).encode(),
            _error("BadSignatureError"),
        ),
        Vector(
            "forged-beside-valid",
            "A valid and a forged signature by the trusted key: the note is rejected.",
            (TEXT + "\n" + a_line + _flip_signature_bit(a_line) + co_line).encode(),
            _error("BadSignatureError"),
        ),
        Vector(
            "modified-size",
            "The tree size was changed after signing.",
            (TEXT.replace("\n3\n", "\n4\n") + "\n" + a_line + co_line).encode(),
            _error("BadSignatureError"),
        ),
        Vector(
            "other-list",
            "A valid checkpoint by the owner, but for another of its lists.",
            _sign(other_list),
            _error("UnknownOriginError"),
        ),
        # --- note syntax
        Vector(
            "missing-blank-line",
            "No blank line between the text and the signature.",
            (TEXT + a_line).encode(),
            malformed_note,
        ),
        Vector(
            "hyphen-not-em-dash",
            "The signature line starts with '-' instead of the em dash U+2014.",
            (TEXT + "\n" + a_line.replace("— ", "- ", 1)).encode(),
            malformed_note,
        ),
        Vector(
            "crlf-line-endings",
            "CR LF line endings: CR is a forbidden control character.",
            (TEXT + "\n" + a_line).replace("\n", "\r\n").encode(),
            malformed_note,
        ),
        Vector(
            "invalid-utf8",
            "A byte 0xFF, which is never valid UTF-8, in the origin.",
            (TEXT + "\n" + a_line).encode().replace(b"node-a/baseline", b"node-a/\xffbaseline"),
            malformed_note,
        ),
        Vector(
            "short-signature",
            "A signature that decodes to 4 bytes: a key id and no signature.",
            (
                TEXT
                + f"\n{sig_dash} {sig_name} {base64.b64encode(NODE_A.signer.key_id).decode()}\n"
            ).encode(),
            malformed_note,
        ),
        Vector(
            "non-canonical-signature-base64",
            "The trusted signature spelled with a non-zero spare bit in its last base64 character.",
            (TEXT + f"\n{sig_dash} {sig_name} {_twin(sig_b64)}\n" + co_line).encode(),
            malformed_note,
        ),
        Vector(
            "too-many-signatures",
            f"{MAX_SIGNATURES + 1} signature lines, one more than the bound.",
            (TEXT + "\n" + _unknown_lines(MAX_SIGNATURES - 1) + a_line + co_line).encode(),
            _error("LimitExceededError"),
        ),
        # --- checkpoint syntax, each signed by the trusted key
        Vector(
            "leading-zero-size",
            "Tree size '03'.",
            _signed(_body(ORIGIN, "03", ROOT_B64), NODE_A),
            malformed_checkpoint,
        ),
        Vector(
            "unicode-digit-size",
            "Tree size in fullwidth digits, which Python's int() would accept.",
            _signed(_body(ORIGIN, "３", ROOT_B64), NODE_A),
            malformed_checkpoint,
        ),
        Vector(
            "size-two-to-the-63",
            "Tree size 2^63, one more than the largest accepted.",
            _signed(_body(ORIGIN, str(2**63), ROOT_B64), NODE_A),
            malformed_checkpoint,
        ),
        Vector(
            "truncated-root",
            "A root hash of 31 bytes.",
            _signed(
                _body(ORIGIN, "3", base64.b64encode(ROOT[:31]).decode()),
                NODE_A,
            ),
            malformed_checkpoint,
        ),
        Vector(
            "unpadded-root",
            "The root hash without its '=' padding.",
            _signed(_body(ORIGIN, "3", ROOT_B64.rstrip("=")), NODE_A),
            malformed_checkpoint,
        ),
        Vector(
            "non-canonical-root",
            "The root hash spelled with a non-zero spare bit, so it decodes to the same 32 bytes.",
            _signed(_body(ORIGIN, "3", _twin(ROOT_B64)), NODE_A),
            malformed_checkpoint,
        ),
        # --- cosignatures (c2sp.org/tlog-cosignature): the date of a checkpoint
        Vector(
            "witness-cosignature-ignored",
            "A third cosignature by a witness the verifier does not trust is ignored.",
            _sign(CHECKPOINT) + _line(WITNESS, TEXT).encode(),
            _ok(CHECKPOINT),
        ),
        Vector(
            "witness-cosignature-trusted",
            "The same note, verified trusting the witness too: its cosignature verifies.",
            _sign(CHECKPOINT) + _line(WITNESS, TEXT).encode(),
            _ok(CHECKPOINT),
            trusted=(NODE_A, NODE_A_CO, WITNESS),
        ),
        Vector(
            "old-timestamp-line-is-an-extension",
            "A fourth line 'timestamp N' (the format before cosignatures) is an opaque extension.",
            _sign(old_format),
            _ok(old_format),
        ),
        Vector(
            "missing-cosignature",
            "Signed by the log key only: no dated cosignature by the owner's cosigner key.",
            (TEXT + "\n" + a_line).encode(),
            _error("MissingCosignatureError"),
        ),
        Vector(
            "cosigner-key-only",
            "Cosigned by the owner's cosigner key but not signed by its log key.",
            (TEXT + "\n" + co_line).encode(),
            _error("NoTrustedSignatureError"),
        ),
        Vector(
            "cosignature-timestamp-changed",
            "The cosignature's timestamp moved by one second after signing.",
            (TEXT + "\n" + a_line + _flip_signature_bit(co_line, at=4 + 7)).encode(),
            _error("BadSignatureError"),
        ),
        Vector(
            "cosignature-as-log-signature",
            "A plain Ed25519 signature of the text by the cosigner key, under its 0x04 key id.",
            (TEXT + "\n" + a_line + _plain_by_cosigner(NODE_A_CO, TEXT)).encode(),
            _error("BadSignatureError"),
        ),
    ]


# --- output ----------------------------------------------------------------------------------


def _json(value: object) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode()


def _readme(vectors: list[Vector]) -> bytes:
    rows = "\n".join(
        f"| `{v.name}` | {v.kind} | {v.want.get('error', 'accepted')} | {v.description} |"
        for v in vectors
    )
    text = f"""# Signed-note and checkpoint vectors

Generated by `tests/vectors/generate_notes.py`; do not edit by hand. Each
`<name>.note` holds the exact bytes of a signed note; `index.json` says which
keys are trusted, which origin is expected and what the verifier must answer;
`keys.json` lists the test keys with their seeds. Test keys only: never use
them for anything else.

| vector | kind | expected | description |
|---|---|---|---|
{rows}
"""
    return text.encode()


def build() -> dict[str, bytes]:
    """Return every file of the vector folder, by name."""
    vectors = _vectors()
    names = [v.name for v in vectors]
    if len(set(names)) != len(names):
        raise RuntimeError("two vectors share a name")
    files: dict[str, bytes] = {
        ".gitattributes": b"# Byte-exact: some vectors hold CR or invalid UTF-8.\n* -text\n",
        "README.md": _readme(vectors),
        "keys.json": _json(
            [
                {
                    "label": k.label,
                    "kind": "cosigner" if isinstance(k.signer, CosignatureSigner) else "log",
                    "name": k.signer.name,
                    "seed": k.seed.hex(),
                    "public_key": k.signer.public_key_raw.hex(),
                    "key_id": k.signer.key_id.hex(),
                    "verifier_key": k.signer.verifier_key,
                }
                for k in KEYS
            ]
        ),
        "index.json": _json(
            [
                {
                    "name": v.name,
                    "description": v.description,
                    "kind": v.kind,
                    "note_file": f"{v.name}.note",
                    "verifier_keys": [k.signer.verifier_key for k in v.trusted],
                    "origin": v.origin,
                    "want": v.want,
                }
                for v in vectors
            ]
        ),
    }
    for v in vectors:
        files[f"{v.name}.note"] = v.note
    return files


def write(folder: Path = FOLDER, builder: Callable[[], dict[str, bytes]] = build) -> None:
    """Rewrite ``folder`` with the generated files, removing stale ones."""
    files = builder()
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():
        if stale.is_file() and stale.name not in files:
            stale.unlink()
    for name, data in files.items():
        (folder / name).write_bytes(data)


if __name__ == "__main__":
    write()
    print(f"wrote {len(build())} files to {FOLDER}", file=sys.stderr)
