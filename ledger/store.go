package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/proto"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// The database's layout: bucket entries maps each entry's seq (8 bytes,
// big-endian) to its stored bytes, the deterministic encoding of its
// LedgerEntry; bucket meta holds the head under key head: the last
// entry's seq (8 bytes, big-endian) and the SHA-256 of its stored bytes
// (seq 0 and 32 zero bytes while the ledger is empty).
var (
	entriesBucket = []byte("entries")
	metaBucket    = []byte("meta")
	headKey       = []byte("head")
)

// MaxEntryBytes is the longest stored entry read: a record of
// MaxRecordBytes with its signatures and the entry's own fields.
const MaxEntryBytes = MaxRecordBytes + 1024

// lockTimeout is how long opening a database waits for another process
// to let go of it. A seed node holds its ledger for as long as it runs,
// so waiting longer would not help: bbolt tries the lock once and gives
// up at once with any timeout below its 50 ms retry interval.
const lockTimeout = time.Millisecond

var (
	// ErrCorrupt marks a database, or a sequence of entries, that fails
	// verification; the error is a *CorruptError.
	ErrCorrupt = errors.New("ledger: corrupt ledger")
	// ErrLocked marks a database file that another process (a running
	// seed node) holds.
	ErrLocked = errors.New("ledger: database in use by another process")
	// ErrClosed marks a call on a closed Store.
	ErrClosed = errors.New("ledger: store closed")
)

// CorruptError says which entry of a ledger is the first bad one, and
// why. Seq 0 means the database as a whole (its file or its head).
type CorruptError struct {
	Seq    uint64
	Reason string
	Err    error // the record's *RecordError when a signature or encoding fails; may be nil
}

func (e *CorruptError) Error() string {
	if e.Seq == 0 {
		return "ledger: corrupt ledger: " + e.Reason
	}
	return fmt.Sprintf("ledger: entry %d: %s", e.Seq, e.Reason)
}

// Unwrap gives ErrCorrupt, and the record's error when there is one.
func (e *CorruptError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrCorrupt, e.Err}
	}
	return []error{ErrCorrupt}
}

// Entry is one entry of the ledger: exactly one of Receipt and Fault is
// set. Hash is the SHA-256 of Raw, the entry's stored bytes; PrevHash is
// the previous entry's Hash (zero for seq 1).
type Entry struct {
	Seq            uint64
	PrevHash, Hash [32]byte
	Time           time.Time // when the seed node appended it, on its clock
	Raw            []byte
	Receipt        *rookeryv1.Receipt
	Fault          *rookeryv1.Fault
}

// Work sums a key's receipts and faults. WallMS sums the receipts' spans
// (end − start). For a provider, Faults counts the faults that name it
// signed by a requester that had a session with it (a receipt of both in
// the ledger, before the fault or after it), one per session, and
// UnbackedFaults the others: those anyone could sign, and a session's
// faults after its first, which count for nothing else. For a
// requester, Faults counts the faults it signed. LastFault is the Time of
// the latest fault counted in Faults, on the seed node's clock (not the
// fault's own timestamp, which its signer chose), zero when there is
// none.
type Work struct {
	FLOPs, BytesIn, BytesOut, Steps, MicroBatches, WallMS int64
	Receipts, Faults, UnbackedFaults                      int
	LastFault                                             time.Time
}

// Totals sums the ledger per provider and per requester, keyed by the
// standard base64 of their public keys (as transport.EncodeIdentityKey
// writes them).
type Totals struct {
	Providers, Requesters map[string]Work
}

func newTotals() Totals {
	return Totals{Providers: map[string]Work{}, Requesters: map[string]Work{}}
}

func (t Totals) clone() Totals {
	c := Totals{Providers: make(map[string]Work, len(t.Providers)), Requesters: make(map[string]Work, len(t.Requesters))}
	for k, w := range t.Providers {
		c.Providers[k] = w
	}
	for k, w := range t.Requesters {
		c.Requesters[k] = w
	}
	return c
}

func (t Totals) addReceipt(r *rookeryv1.Receipt) {
	add := func(m map[string]Work, key []byte) {
		k := base64.StdEncoding.EncodeToString(key)
		w, rw := m[k], r.GetWork()
		w.FLOPs = addSat(w.FLOPs, rw.GetFlops())
		w.BytesIn = addSat(w.BytesIn, rw.GetBytesIn())
		w.BytesOut = addSat(w.BytesOut, rw.GetBytesOut())
		w.Steps = addSat(w.Steps, rw.GetSteps())
		w.MicroBatches = addSat(w.MicroBatches, rw.GetMicroBatches())
		w.WallMS = addSat(w.WallMS, SpanMS(r))
		w.Receipts++
		m[k] = w
	}
	add(t.Providers, r.GetProviderKey())
	add(t.Requesters, r.GetRequesterKey())
}

// addSat adds two figures that are not negative (checkReceipt sees to
// it), stopping at the largest int64.
func addSat(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// SpanMS is a receipt's span, end − start (not negative: checkReceipt),
// at most the largest int64.
func SpanMS(r *rookeryv1.Receipt) int64 {
	if d := uint64(r.GetEndUnixMs()) - uint64(r.GetStartUnixMs()); d <= math.MaxInt64 {
		return int64(d)
	}
	return math.MaxInt64
}

func (t Totals) addFault(f *rookeryv1.Fault, at time.Time, backed bool) {
	add := func(m map[string]Work, key []byte, counts bool) {
		k := base64.StdEncoding.EncodeToString(key)
		w := m[k]
		if !counts {
			w.UnbackedFaults++
			m[k] = w
			return
		}
		w.Faults++
		if at.After(w.LastFault) {
			w.LastFault = at
		}
		m[k] = w
	}
	add(t.Providers, f.GetProviderKey(), backed)
	add(t.Requesters, f.GetRequesterKey(), true)
}

// tally is the ledger's totals and what it takes to keep them honest:
// the receipts and faults already counted (a record submitted twice is
// stored and counted once) and the pairs of provider and requester that
// have a receipt together.
type tally struct {
	totals   Totals
	receipts map[string]uint64   // receiptKey → seq
	faults   map[[32]byte]uint64 // SHA-256 of the fault's bytes → seq
	pairs    map[string]bool     // provider key + requester key
	// unbacked holds, by pair, the times of faults counted as unbacked,
	// until a receipt of the pair backs them.
	unbacked map[string][]time.Time
	// faulted holds the pair and session of every fault that counts or
	// may: a requester faults a provider once per session.
	faulted map[string]bool
}

func newTally() tally {
	return tally{totals: newTotals(), receipts: map[string]uint64{}, faults: map[[32]byte]uint64{}, pairs: map[string]bool{},
		unbacked: map[string][]time.Time{}, faulted: map[string]bool{}}
}

// receiptKey names a receipt by its provider, session and index: a
// provider signs one receipt per index of a session.
func receiptKey(r *rookeryv1.Receipt) string {
	return fmt.Sprintf("%x/%q/%d", r.GetProviderKey(), r.GetSession(), r.GetIndex())
}

// receipt counts r, entry seq, unless a receipt of the same key was
// counted: then it returns that one's seq.
func (t *tally) receipt(r *rookeryv1.Receipt, seq uint64) (dup uint64) {
	k := receiptKey(r)
	if d, ok := t.receipts[k]; ok {
		return d
	}
	t.receipts[k] = seq
	pair := string(r.GetProviderKey()) + string(r.GetRequesterKey())
	t.pairs[pair] = true
	t.totals.addReceipt(r)
	// The pair's faults that came before its first receipt count now.
	if ats := t.unbacked[pair]; len(ats) > 0 {
		pk := base64.StdEncoding.EncodeToString(r.GetProviderKey())
		w := t.totals.Providers[pk]
		for _, at := range ats {
			w.UnbackedFaults--
			w.Faults++
			if at.After(w.LastFault) {
				w.LastFault = at
			}
		}
		t.totals.Providers[pk] = w
		delete(t.unbacked, pair)
	}
	return 0
}

// fault counts f (whose signed bytes are b), entry seq at at, unless the
// same fault was counted: then it returns that one's seq.
func (t *tally) fault(f *rookeryv1.Fault, b []byte, at time.Time, seq uint64) (dup uint64) {
	k := sha256.Sum256(b)
	if d, ok := t.faults[k]; ok {
		return d
	}
	t.faults[k] = seq
	pair := string(f.GetProviderKey()) + string(f.GetRequesterKey())
	once := pair + "\x00" + f.GetSession()
	if t.faulted[once] {
		// another fault of the same session: kept, counted apart
		t.totals.addFault(f, at, false)
		return 0
	}
	t.faulted[once] = true
	backed := t.pairs[pair]
	if !backed {
		t.unbacked[pair] = append(t.unbacked[pair], at)
	}
	t.totals.addFault(f, at, backed)
	return 0
}

// DecodeEntry decodes an entry's stored bytes. It accepts only the
// deterministic encoding of an entry with a seq, a 32-byte prev_hash and
// a record, so that each entry has one stored form; it does not check
// the record's signatures. Its errors are *RecordError wrapping
// ErrMalformed.
func DecodeEntry(raw []byte) (*rookeryv1.LedgerEntry, error) {
	if len(raw) == 0 || len(raw) > MaxEntryBytes {
		return nil, bad("entry", ErrMalformed, "%d bytes (at most %d)", len(raw), MaxEntryBytes)
	}
	le := &rookeryv1.LedgerEntry{}
	if err := proto.Unmarshal(raw, le); err != nil {
		return nil, bad("entry", ErrMalformed, "%v", err)
	}
	switch {
	case le.GetSeq() == 0:
		return nil, bad("entry", ErrMalformed, "no seq")
	case len(le.GetPrevHash()) != sha256.Size:
		return nil, bad("entry", ErrMalformed, "prev_hash of %d bytes", len(le.GetPrevHash()))
	case le.GetRecord() == nil:
		return nil, bad("entry", ErrMalformed, "no record")
	}
	again, err := proto.MarshalOptions{Deterministic: true}.Marshal(le)
	if err != nil {
		return nil, bad("entry", ErrMalformed, "%v", err)
	}
	if !bytes.Equal(again, raw) {
		return nil, bad("entry", ErrMalformed, "not in its deterministic encoding")
	}
	return le, nil
}

// chain checks entries in seq order and sums them.
type chain struct {
	n     uint64
	head  [32]byte
	tally tally
}

func newChain() *chain { return &chain{tally: newTally()} }

// add checks raw as entry n+1: it decodes, says it is entry n+1, carries
// the hash of entry n, and its record's signatures check.
func (c *chain) add(raw []byte) error {
	seq := c.n + 1
	le, err := DecodeEntry(raw)
	if err != nil {
		return &CorruptError{Seq: seq, Reason: "does not decode: " + reason(err), Err: err}
	}
	if le.GetSeq() != seq {
		return &CorruptError{Seq: seq, Reason: fmt.Sprintf("stored as entry %d but says it is entry %d", seq, le.GetSeq())}
	}
	if !bytes.Equal(le.GetPrevHash(), c.head[:]) {
		if seq == 1 {
			return &CorruptError{Seq: seq, Reason: "prev_hash is not zero"}
		}
		return &CorruptError{Seq: seq, Reason: fmt.Sprintf("prev_hash does not match entry %d", seq-1)}
	}
	at := time.UnixMilli(le.GetUnixMs()).UTC()
	switch rec := le.GetRecord().(type) {
	case *rookeryv1.LedgerEntry_Receipt:
		r, err := OpenReceipt(rec.Receipt)
		if err != nil {
			return &CorruptError{Seq: seq, Reason: reason(err), Err: err}
		}
		c.tally.receipt(r, seq)
	case *rookeryv1.LedgerEntry_Fault:
		f, err := OpenFault(rec.Fault)
		if err != nil {
			return &CorruptError{Seq: seq, Reason: reason(err), Err: err}
		}
		c.tally.fault(f, rec.Fault.GetFault(), at, seq)
	}
	c.n, c.head = seq, sha256.Sum256(raw)
	return nil
}

// checkHead checks that the head recorded for the ledger names its last
// entry.
func (c *chain) checkHead(seq uint64, hash [32]byte) error {
	switch {
	case seq > c.n:
		return &CorruptError{Seq: c.n + 1, Reason: fmt.Sprintf("missing: the head is entry %d but the last entry is %d", seq, c.n)}
	case seq < c.n:
		return &CorruptError{Seq: seq + 1, Reason: fmt.Sprintf("beyond the head, which is entry %d", seq)}
	case hash != c.head && c.n == 0:
		return &CorruptError{Reason: "the head of an empty ledger is not zero"}
	case hash != c.head:
		return &CorruptError{Seq: c.n, Reason: "does not match the head's hash"}
	}
	return nil
}

// reason is a record error's text without its "ledger: " prefix.
func reason(err error) string {
	var re *RecordError
	if errors.As(err, &re) {
		return re.What + ": " + re.Reason
	}
	return err.Error()
}

// VerifyEntries checks entries' stored bytes, given in seq order from
// entry 1, as Open checks a database: each decodes, carries the hash of
// the one before, and its signatures check; the last one's hash must be
// head (32 zero bytes when raw is empty). It returns the number of
// entries, or a *CorruptError naming the first bad one.
func VerifyEntries(raw [][]byte, head [32]byte) (n uint64, err error) {
	c := newChain()
	for _, b := range raw {
		if err := c.add(b); err != nil {
			return c.n, err
		}
	}
	if err := c.checkHead(c.n, head); err != nil {
		return c.n, err
	}
	return c.n, nil
}

// scan checks the whole database in tx, as Open and Verify do. fresh
// reports a database without the ledger's buckets (a new file).
func scan(tx *bolt.Tx) (c *chain, fresh bool, err error) {
	c = newChain()
	// bbolt panics on some damaged pages, and reading past the end of
	// its memory map faults: both become a *CorruptError.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = &CorruptError{Seq: c.n + 1, Reason: fmt.Sprintf("the database file is damaged: %v", p)}
		}
	}()
	entries, meta := tx.Bucket(entriesBucket), tx.Bucket(metaBucket)
	switch {
	case entries == nil && meta == nil:
		if k, _ := tx.Cursor().First(); k != nil {
			return c, false, &CorruptError{Reason: "not a ledger: other buckets and no entries"}
		}
		return c, true, nil
	case entries == nil:
		return c, false, &CorruptError{Reason: "no entries bucket"}
	case meta == nil:
		return c, false, &CorruptError{Reason: "no meta bucket"}
	}
	cur := entries.Cursor()
	for k, v := cur.First(); k != nil; k, v = cur.Next() {
		want := c.n + 1
		if len(k) != 8 {
			return c, false, &CorruptError{Seq: want, Reason: fmt.Sprintf("stored under a key of %d bytes", len(k))}
		}
		if seq := binary.BigEndian.Uint64(k); seq != want {
			return c, false, &CorruptError{Seq: want, Reason: fmt.Sprintf("missing: the next stored entry is %d", seq)}
		}
		if v == nil {
			return c, false, &CorruptError{Seq: want, Reason: "stored as a bucket"}
		}
		if err := c.add(v); err != nil {
			return c, false, err
		}
	}
	h := meta.Get(headKey)
	if len(h) != 8+sha256.Size {
		return c, false, &CorruptError{Reason: fmt.Sprintf("a head of %d bytes", len(h))}
	}
	if err := c.checkHead(binary.BigEndian.Uint64(h), [32]byte(h[8:])); err != nil {
		return c, false, err
	}
	return c, false, nil
}

// openBolt opens path with bbolt, trying its lock once.
func openBolt(path string, readOnly bool) (db *bolt.DB, err error) {
	// bbolt.Open reads the free list, and panics when it is damaged.
	// The file it opened is closed then, but its memory map, which bbolt
	// gives no way to undo, keeps the file locked until the process ends:
	// a seed node refusing its ledger exits anyway.
	var file *os.File
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			if file != nil {
				file.Close()
			}
			db, err = nil, &CorruptError{Reason: fmt.Sprintf("%s: the database file is damaged: %v", path, p)}
		}
	}()
	openFile := func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout, ReadOnly: readOnly, PreLoadFreelist: true, OpenFile: openFile})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s (a running seed node? verify its ledger with --seed URL)", ErrLocked, path)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrVersionMismatch), errors.Is(err, bolterrors.ErrChecksum):
		return nil, &CorruptError{Reason: fmt.Sprintf("%s: %v", path, err)}
	}
	return nil, fmt.Errorf("ledger: %w", err)
}

// Verify opens the database at path read-only and checks it as Open
// does. It returns the number of entries, or a *CorruptError naming the
// first bad one (ErrLocked when a running seed node holds the file).
func Verify(path string) (n uint64, err error) {
	n, _, err = VerifyHead(path)
	return n, err
}

// VerifyHead is Verify that also returns the head's hash.
func VerifyHead(path string) (n uint64, head [32]byte, err error) {
	if _, err := os.Stat(path); err != nil {
		return 0, head, fmt.Errorf("ledger: %w", err)
	}
	db, err := openBolt(path, true)
	if err != nil {
		return 0, head, err
	}
	defer db.Close()
	c := newChain()
	err = db.View(func(tx *bolt.Tx) error {
		var fresh bool
		c, fresh, err = scan(tx)
		if err == nil && fresh {
			err = &CorruptError{Reason: "not a ledger: no entries or meta bucket"}
		}
		return err
	})
	if err != nil {
		return c.n, head, err
	}
	return c.n, c.head, nil
}

// StoreOption configures a Store.
type StoreOption func(*Store)

// WithClock sets the clock that stamps appended entries (time.Now by
// default).
func WithClock(now func() time.Time) StoreOption {
	return func(s *Store) { s.now = now }
}

// Store is a seed node's ledger: an append-only, hash-chained log of
// receipts and faults in a bbolt database. It is safe for concurrent
// use.
type Store struct {
	db  *bolt.DB
	now func() time.Time

	mu     sync.Mutex // orders appends; guards the fields below
	closed bool
	n      uint64
	head   [32]byte
	tally  tally
}

// Open opens the ledger database at path, creating it (and its
// directory) when it does not exist, and verifies all of it: every entry
// decodes, carries the hash of the one before, and its record's
// signatures check, and the head names the last entry. A database that
// fails is refused with a *CorruptError naming the first bad entry.
func Open(path string, opts ...StoreOption) (*Store, error) {
	s := &Store{now: time.Now}
	for _, o := range opts {
		o(s)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	db, err := openBolt(path, false)
	if err != nil {
		return nil, err
	}
	var (
		c     *chain
		fresh bool
	)
	err = db.View(func(tx *bolt.Tx) error {
		c, fresh, err = scan(tx)
		return err
	})
	if err == nil && fresh {
		err = db.Update(func(tx *bolt.Tx) error {
			if _, err := tx.CreateBucket(entriesBucket); err != nil {
				return err
			}
			m, err := tx.CreateBucket(metaBucket)
			if err != nil {
				return err
			}
			return m.Put(headKey, make([]byte, 8+sha256.Size))
		})
		if err != nil {
			err = fmt.Errorf("ledger: %w", err)
		}
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	s.db, s.n, s.head, s.tally = db, c.n, c.head, c.tally
	return s, nil
}

// AppendReceipt checks both signatures of sr (refusing a bad receipt
// with its *RecordError) and appends it. A receipt of the same provider,
// session and index as one in the ledger is not appended again: the
// entry already there is returned, so that a submission can be retried.
func (s *Store) AppendReceipt(sr *rookeryv1.SignedReceipt) (Entry, error) {
	r, err := OpenReceipt(sr)
	if err != nil {
		return Entry{}, err
	}
	// Only the known fields are kept.
	le := &rookeryv1.LedgerEntry{Record: &rookeryv1.LedgerEntry_Receipt{Receipt: &rookeryv1.SignedReceipt{
		Receipt:            sr.GetReceipt(),
		ProviderSignature:  sr.GetProviderSignature(),
		RequesterSignature: sr.GetRequesterSignature(),
	}}}
	return s.append(le, func() uint64 { return s.tally.receipts[receiptKey(r)] }, func(seq uint64) { s.tally.receipt(r, seq) })
}

// AppendFault checks sf's signature (refusing a bad fault with its
// *RecordError) and appends it; the same signed fault again returns the
// entry already there.
func (s *Store) AppendFault(sf *rookeryv1.SignedFault) (Entry, error) {
	f, err := OpenFault(sf)
	if err != nil {
		return Entry{}, err
	}
	le := &rookeryv1.LedgerEntry{Record: &rookeryv1.LedgerEntry_Fault{Fault: &rookeryv1.SignedFault{
		Fault:              sf.GetFault(),
		RequesterSignature: sf.GetRequesterSignature(),
	}}}
	return s.append(le, func() uint64 { return s.tally.faults[sha256.Sum256(sf.GetFault())] }, func(seq uint64) {
		s.tally.fault(f, sf.GetFault(), time.UnixMilli(le.GetUnixMs()).UTC(), seq)
	})
}

// append writes le, whose record is set, as the next entry and its new
// head in one transaction, and then counts it with count. dup returns
// the seq of the same record in the ledger, or 0: then nothing is written
// and that entry is returned.
func (s *Store) append(le *rookeryv1.LedgerEntry, dup func() uint64, count func(seq uint64)) (Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Entry{}, ErrClosed
	}
	at := time.UnixMilli(s.now().UnixMilli()).UTC()
	le.Seq, le.PrevHash, le.UnixMs = s.n+1, s.head[:], at.UnixMilli()
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(le)
	if err != nil {
		return Entry{}, fmt.Errorf("ledger: %w", err)
	}
	if d := dup(); d != 0 {
		var e Entry
		err := s.db.View(func(tx *bolt.Tx) error {
			var err error
			e, err = readEntry(tx.Bucket(entriesBucket).Get(binary.BigEndian.AppendUint64(nil, d)))
			return err
		})
		return e, err
	}
	e := Entry{Seq: le.Seq, PrevHash: s.head, Hash: sha256.Sum256(raw), Time: at, Raw: raw}
	head := binary.BigEndian.AppendUint64(nil, e.Seq)
	head = append(head, e.Hash[:]...)
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(entriesBucket).Put(binary.BigEndian.AppendUint64(nil, e.Seq), raw); err != nil {
			return err
		}
		return tx.Bucket(metaBucket).Put(headKey, head)
	})
	if err != nil {
		return Entry{}, fmt.Errorf("ledger: appending entry %d: %w", e.Seq, err)
	}
	s.n, s.head = e.Seq, e.Hash
	count(e.Seq)
	return readEntry(raw)
}

// Entries returns up to limit entries from seq from on (from 0 reads
// from 1).
func (s *Store) Entries(from uint64, limit int) ([]Entry, error) {
	if from == 0 {
		from = 1
	}
	if limit <= 0 {
		return nil, nil
	}
	s.mu.Lock()
	closed, n := s.closed, s.n
	s.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if from > n {
		return nil, nil
	}
	out := make([]Entry, 0, min(uint64(limit), n-from+1))
	err := s.db.View(func(tx *bolt.Tx) error {
		cur := tx.Bucket(entriesBucket).Cursor()
		for k, v := cur.Seek(binary.BigEndian.AppendUint64(nil, from)); k != nil && len(out) < limit; k, v = cur.Next() {
			e, err := readEntry(v)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// readEntry decodes an entry that Open or an append already checked.
func readEntry(v []byte) (Entry, error) {
	raw := bytes.Clone(v)
	le, err := DecodeEntry(raw)
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Seq: le.GetSeq(), PrevHash: [32]byte(le.GetPrevHash()), Hash: sha256.Sum256(raw), Time: time.UnixMilli(le.GetUnixMs()).UTC(), Raw: raw}
	switch rec := le.GetRecord().(type) {
	case *rookeryv1.LedgerEntry_Receipt:
		e.Receipt = &rookeryv1.Receipt{}
		err = proto.Unmarshal(rec.Receipt.GetReceipt(), e.Receipt)
	case *rookeryv1.LedgerEntry_Fault:
		e.Fault = &rookeryv1.Fault{}
		err = proto.Unmarshal(rec.Fault.GetFault(), e.Fault)
	}
	if err != nil {
		return Entry{}, bad("entry", ErrMalformed, "%v", err)
	}
	return e, nil
}

// Head returns the last entry's seq and hash (0 and zero when the ledger
// is empty).
func (s *Store) Head() (seq uint64, hash [32]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n, s.head
}

// Totals returns a copy of the ledger's sums per provider and per
// requester.
func (s *Store) Totals() Totals {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tally.totals.clone()
}

// Close closes the database; later calls give ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	return nil
}
