// Command verifier checks hashfed's test vectors with Go's own transparency-log
// code, unmodified: golang.org/x/mod/sumdb/note opens the signed checkpoints
// and golang.org/x/mod/sumdb/tlog checks the Merkle proofs. The only code of
// ours is a note.Verifier for C2SP tlog-cosignature/v1 (signature type 0x04),
// which the note package lets a caller supply, and the checkpoint body rules
// of C2SP tlog-checkpoint.
//
// It prints one JSON object per check on standard output; the Python test
// tests/integration/test_go_interop.py compares them with what each vector
// expects. Build in GOPATH mode (Debian: golang-go, golang-golang-x-mod-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go run ./tests/interop/verifier tests/vectors
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const (
	algEd25519     = 0x01 // c2sp.org/signed-note
	algCosignature = 0x04 // c2sp.org/tlog-cosignature, cosignature/v1
)

// cosigVerifier is a note.Verifier for Ed25519 cosignature/v1 lines: the
// signature is an 8-byte big-endian timestamp and an Ed25519 signature over
// "cosignature/v1\ntime <T>\n" followed by the note text.
type cosigVerifier struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

func (v *cosigVerifier) Name() string    { return v.name }
func (v *cosigVerifier) KeyHash() uint32 { return v.hash }
func (v *cosigVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig[:8])
	if t > 1<<63-1 {
		return false
	}
	m := append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", t)), msg...)
	return ed25519.Verify(v.key, m, sig[8:])
}

func keyHash(name string, alg byte, key []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', alg})
	h.Write(key)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// newVerifier parses a verifier key: type 0x01 with note.NewVerifier, type
// 0x04 into a cosigVerifier (same "<name>+<hex id>+<base64>" shape).
func newVerifier(vkey string) (v note.Verifier, cosigner bool, err error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return nil, false, errors.New("malformed verifier key")
	}
	data, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(data) == 0 {
		return nil, false, errors.New("malformed verifier key data")
	}
	if data[0] == algEd25519 {
		v, err := note.NewVerifier(vkey)
		return v, false, err
	}
	if data[0] != algCosignature || len(data) != 1+ed25519.PublicKeySize {
		return nil, false, errors.New("unknown verifier key type")
	}
	h := keyHash(parts[0], algCosignature, data[1:])
	if fmt.Sprintf("%08x", h) != strings.ToLower(parts[1]) {
		return nil, false, errors.New("verifier key id mismatch")
	}
	return &cosigVerifier{parts[0], h, ed25519.PublicKey(data[1:])}, true, nil
}

type checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
}

var decimal = regexp.MustCompile(`^(0|[1-9][0-9]*)$`)

// parseCheckpoint applies c2sp.org/tlog-checkpoint: origin, decimal size
// without leading zeros, padded standard base64 of 32 bytes, then optional
// non-empty extension lines.
func parseCheckpoint(text string) (checkpoint, error) {
	var cp checkpoint
	if !strings.HasSuffix(text, "\n") {
		return cp, errors.New("checkpoint: no final newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return cp, errors.New("checkpoint: fewer than 3 lines")
	}
	for _, l := range lines {
		if l == "" {
			return cp, errors.New("checkpoint: empty line")
		}
	}
	if !decimal.MatchString(lines[1]) {
		return cp, errors.New("checkpoint: size is not canonical decimal")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		return cp, fmt.Errorf("checkpoint: size: %v", err)
	}
	root, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return cp, errors.New("checkpoint: root is not base64 of 32 bytes")
	}
	cp.Origin, cp.Size = lines[0], size
	copy(cp.Root[:], root)
	return cp, nil
}

type verdict struct {
	Check     string `json:"check"`
	Name      string `json:"name"`
	OK        bool   `json:"ok"`
	Error     string `json:"error,omitempty"`
	Size      int64  `json:"size,omitempty"`
	Root      string `json:"root,omitempty"`
	Timestamp uint64 `json:"timestamp,omitempty"`
	Text      string `json:"text,omitempty"`
}

// openCheckpoint: note.Open with the trusted keys; one log (0x01) signature
// and one cosignature are required; the newest cosignature is the date.
func openCheckpoint(msg []byte, vkeys []string, origin string, kind string) verdict {
	var list []note.Verifier
	cosigners := map[string]bool{}
	for _, k := range vkeys {
		v, cos, err := newVerifier(k)
		if err != nil {
			return verdict{Error: "key: " + err.Error()}
		}
		list = append(list, v)
		if cos {
			cosigners[fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash())] = true
		}
	}
	n, err := note.Open(msg, note.VerifierList(list...))
	if err != nil {
		return verdict{Error: "note: " + err.Error()}
	}
	if kind == "note" {
		return verdict{OK: true, Text: n.Text}
	}
	logSigned := false
	var newest uint64
	cosigned := false
	for _, s := range n.Sigs {
		if !cosigners[fmt.Sprintf("%s+%08x", s.Name, s.Hash)] {
			logSigned = true
			continue
		}
		raw, _ := base64.StdEncoding.DecodeString(s.Base64)
		t := binary.BigEndian.Uint64(raw[4:12])
		if !cosigned || t > newest {
			newest = t
		}
		cosigned = true
	}
	if !logSigned {
		return verdict{Error: "no signature by a log key"}
	}
	cp, err := parseCheckpoint(n.Text)
	if err != nil {
		return verdict{Error: err.Error()}
	}
	if cp.Origin != origin {
		return verdict{Error: "checkpoint for another origin"}
	}
	if !cosigned {
		return verdict{Error: "no cosignature by a trusted cosigner"}
	}
	return verdict{OK: true, Size: cp.Size, Root: hex.EncodeToString(cp.Root[:]), Timestamp: newest}
}

func readJSON(path string, v interface{}) {
	data, err := os.ReadFile(path)
	if err != nil {
		fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		fatal(fmt.Errorf("%s: %v", path, err))
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "verifier:", err)
	os.Exit(2)
}

var errMalformedHash = errors.New("not a 32-byte hex hash")

// parseHash decodes hex; a wrong length is the probe's error, not the program's.
func parseHash(s string, bad *error) tlog.Hash {
	var h tlog.Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != tlog.HashSize {
		*bad = errMalformedHash
		return h
	}
	copy(h[:], b)
	return h
}

func hashOf(s string) tlog.Hash {
	var bad error
	h := parseHash(s, &bad)
	if bad != nil {
		fatal(fmt.Errorf("bad hash %q", s))
	}
	return h
}

func parseHashes(list []string, bad *error) []tlog.Hash {
	out := make([]tlog.Hash, len(list))
	for i, s := range list {
		out[i] = parseHash(s, bad)
	}
	return out
}

func hashes(list []string) []tlog.Hash {
	var bad error
	out := parseHashes(list, &bad)
	if bad != nil {
		fatal(bad)
	}
	return out
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// treeRoot builds the RFC 6962 root of leaf hashes with tlog's stored-hash layout.
func treeRoot(leaves []tlog.Hash) (tlog.Hash, error) {
	var stored []tlog.Hash
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	for i, leaf := range leaves {
		// StoredHashesForRecordHash returns the hashes record i adds, leaf first.
		add, err := tlog.StoredHashesForRecordHash(int64(i), leaf, reader)
		if err != nil {
			return tlog.Hash{}, err
		}
		stored = append(stored, add...)
	}
	return tlog.TreeHash(int64(len(leaves)), reader)
}

func main() {
	if len(os.Args) != 2 {
		fatal(errors.New("usage: verifier <tests/vectors folder>"))
	}
	dir := os.Args[1]
	emit := func(v verdict) {
		b, _ := json.Marshal(v)
		os.Stdout.Write(append(b, '\n'))
	}

	// 1. Signed notes and checkpoints.
	var index []struct {
		Name         string   `json:"name"`
		Kind         string   `json:"kind"`
		NoteFile     string   `json:"note_file"`
		VerifierKeys []string `json:"verifier_keys"`
		Origin       string   `json:"origin"`
	}
	readJSON(filepath.Join(dir, "notes", "index.json"), &index)
	for _, v := range index {
		msg, err := os.ReadFile(filepath.Join(dir, "notes", v.NoteFile))
		if err != nil {
			fatal(err)
		}
		got := openCheckpoint(msg, v.VerifierKeys, v.Origin, v.Kind)
		got.Check, got.Name = "note", v.Name
		emit(got)
	}

	// 2. Inclusion and consistency proofs, every probe.
	for _, kind := range []string{"inclusion", "consistency"} {
		files, _ := filepath.Glob(filepath.Join(dir, "merkle", kind, "*.json"))
		for _, f := range files {
			var vec struct {
				Probes []struct {
					Mutation  string   `json:"mutation"`
					LeafIndex int64    `json:"leafIndex"`
					TreeSize  int64    `json:"treeSize"`
					LeafHash  string   `json:"leafHash"`
					Size1     int64    `json:"size1"`
					Size2     int64    `json:"size2"`
					Proof     []string `json:"proof"`
					Root      string   `json:"root"`
					Root1     string   `json:"root1"`
					Root2     string   `json:"root2"`
				} `json:"probes"`
			}
			readJSON(f, &vec)
			for _, p := range vec.Probes {
				var err, bad error
				if kind == "inclusion" {
					proof, root, leaf := parseHashes(p.Proof, &bad), parseHash(p.Root, &bad), parseHash(p.LeafHash, &bad)
					if err = bad; err == nil {
						err = tlog.CheckRecord(proof, p.TreeSize, root, p.LeafIndex, leaf)
					}
				} else {
					proof, root1, root2 := parseHashes(p.Proof, &bad), parseHash(p.Root1, &bad), parseHash(p.Root2, &bad)
					if err = bad; err == nil {
						err = tlog.CheckTree(proof, p.Size2, root2, p.Size1, root1)
					}
				}
				emit(verdict{Check: kind, Name: filepath.Base(f) + "/" + p.Mutation, OK: err == nil, Error: errString(err)})
			}
		}
	}

	// 3. The protocol vectors: a log export and a match proof, checked as a client would.
	vkeyText, err := os.ReadFile(filepath.Join(dir, "protocol", "owner.vkey"))
	if err != nil {
		fatal(err)
	}
	owner := strings.Fields(string(vkeyText))
	export, err := os.ReadFile(filepath.Join(dir, "protocol", "export.ndjson"))
	if err != nil {
		fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(export, []byte("\n")), []byte("\n"))
	var header struct {
		List       string `json:"list"`
		Size       int64  `json:"size"`
		Checkpoint string `json:"checkpoint"`
	}
	if err := json.Unmarshal(lines[0], &header); err != nil {
		fatal(err)
	}
	cp := openCheckpoint([]byte(header.Checkpoint), owner, "hashfed:"+header.List, "checkpoint")
	cp.Check, cp.Name = "export-checkpoint", header.List
	emit(cp)
	var entries []struct {
		LeafHex     string `json:"leaf_hex"`
		LeafHashHex string `json:"leaf_hash_hex"`
	}
	readJSON(filepath.Join(dir, "protocol", "entries.json"), &entries)
	var leaves []tlog.Hash
	for i, e := range entries {
		leaf, _ := hex.DecodeString(e.LeafHex)
		h := tlog.RecordHash(leaf)
		emit(verdict{Check: "leaf-hash", Name: strconv.Itoa(i), OK: h == hashOf(e.LeafHashHex)})
		leaves = append(leaves, h)
	}
	root, err := treeRoot(leaves)
	emit(verdict{
		Check: "export-root", Name: header.List,
		OK:   err == nil && cp.OK && hex.EncodeToString(root[:]) == cp.Root && int64(len(leaves)) == cp.Size,
		Root: hex.EncodeToString(root[:]), Error: errString(err),
	})

	var mp struct {
		Response struct {
			Results []struct {
				Hits []struct {
					List       string `json:"list"`
					Checkpoint struct {
						Note    string `json:"note"`
						RootHex string `json:"root_hash"`
					} `json:"checkpoint"`
					Proof struct {
						LeafIndex int64    `json:"leaf_index"`
						TreeSize  int64    `json:"tree_size"`
						Hashes    []string `json:"hashes"`
					} `json:"proof"`
				} `json:"hits"`
			} `json:"results"`
		} `json:"response"`
		RebuiltLeafHex string `json:"rebuilt_leaf_hex"`
	}
	readJSON(filepath.Join(dir, "protocol", "match-proof.json"), &mp)
	hit := mp.Response.Results[0].Hits[0]
	signed := openCheckpoint([]byte(hit.Checkpoint.Note), owner, "hashfed:"+hit.List, "checkpoint")
	leaf, _ := hex.DecodeString(mp.RebuiltLeafHex)
	err = errors.New("checkpoint refused: " + signed.Error)
	if signed.OK {
		err = tlog.CheckRecord(hashes(hit.Proof.Hashes), hit.Proof.TreeSize, hashOf(signed.Root), hit.Proof.LeafIndex, tlog.RecordHash(leaf))
	}
	emit(verdict{Check: "match-proof", Name: hit.List, OK: err == nil && signed.Root == hit.Checkpoint.RootHex, Error: errString(err)})
}
