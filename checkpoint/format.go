package checkpoint

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"sort"

	"google.golang.org/protobuf/proto"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/graph"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// The checkpoint container, version 1, all integers little-endian:
//
//	magic    "RKRYCKPT" (8 bytes)
//	version  uint32 (1)
//	steps    uint64: the steps taken when it was written
//	graph    uint64 length, then the graph in the rookery.v1 encoding,
//	         learnables with their values (what Trainer.Save writes)
//	state    uint32 count, then per entry: uint32 name length, the name
//	         (exec.StateName of a parameter and a solver slot), uint64
//	         length, a rookery.v1 Tensor message
//
// The optimiser's update count is steps. Entries are sorted by name, so
// the same state gives the same bytes.
const (
	magic   = "RKRYCKPT"
	version = 1
	// maxEntry bounds one length read from a checkpoint before anything
	// is allocated.
	maxEntry = 1 << 40
)

// WriteTo writes the checkpoint to w in the format above.
func (s *State) WriteTo(w io.Writer) (int64, error) {
	var b bytes.Buffer
	b.WriteString(magic)
	le := binary.LittleEndian
	b.Write(le.AppendUint32(nil, version))
	b.Write(le.AppendUint64(nil, uint64(s.Steps)))
	gb, err := s.Graph.MarshalBinary()
	if err != nil {
		return 0, err
	}
	b.Write(le.AppendUint64(nil, uint64(len(gb))))
	b.Write(gb)
	names := make([]string, 0, len(s.Slots))
	for n := range s.Slots {
		names = append(names, n)
	}
	sort.Strings(names)
	b.Write(le.AppendUint32(nil, uint32(len(names))))
	for _, n := range names {
		pb, err := graph.EncodeTensor(s.Slots[n])
		if err != nil {
			return 0, err
		}
		tb, err := proto.Marshal(pb)
		if err != nil {
			return 0, err
		}
		b.Write(le.AppendUint32(nil, uint32(len(n))))
		b.WriteString(n)
		b.Write(le.AppendUint64(nil, uint64(len(tb))))
		b.Write(tb)
	}
	return b.WriteTo(w)
}

// Read decodes a checkpoint written by WriteTo. It never allocates what a
// length field claims before the bytes are there.
func Read(r io.Reader) (*State, error) {
	bad := func(format string, args ...any) error {
		return &Error{Node: -1, Reason: fmt.Sprintf(format, args...)}
	}
	le := binary.LittleEndian
	head := make([]byte, len(magic)+4+8)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, bad("reading the header: %v", err)
	}
	if string(head[:8]) != magic {
		return nil, bad("not a checkpoint (magic %q)", head[:8])
	}
	if v := le.Uint32(head[8:]); v != version {
		return nil, bad("version %d, this build reads version %d", v, version)
	}
	steps := le.Uint64(head[12:])
	if steps > 1<<62 {
		return nil, bad("%d steps", steps)
	}
	readN := func(n int) (uint64, error) {
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return 0, bad("truncated: %v", err)
		}
		if n == 4 {
			return uint64(le.Uint32(b)), nil
		}
		return le.Uint64(b), nil
	}
	readBytes := func(what string, n uint64) ([]byte, error) {
		if n > maxEntry {
			return nil, bad("%s of %d bytes", what, n)
		}
		// Grow as the bytes arrive rather than trusting n up front.
		var b bytes.Buffer
		if _, err := io.CopyN(&b, r, int64(n)); err != nil {
			return nil, bad("%s truncated: %v", what, err)
		}
		return b.Bytes(), nil
	}
	gl, err := readN(8)
	if err != nil {
		return nil, err
	}
	gb, err := readBytes("graph", gl)
	if err != nil {
		return nil, err
	}
	g := graph.New()
	if err := g.UnmarshalBinary(gb); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	n, err := readN(4)
	if err != nil {
		return nil, err
	}
	s := &State{Steps: int(steps), Graph: g, Slots: make(map[string]*tensor.Dense)}
	for i := uint64(0); i < n; i++ {
		nl, err := readN(4)
		if err != nil {
			return nil, err
		}
		nb, err := readBytes("name", nl)
		if err != nil {
			return nil, err
		}
		tl, err := readN(8)
		if err != nil {
			return nil, err
		}
		tb, err := readBytes("tensor", tl)
		if err != nil {
			return nil, err
		}
		var pb rookeryv1.Tensor
		if err := proto.Unmarshal(tb, &pb); err != nil {
			return nil, bad("state %q: %v", nb, err)
		}
		t, err := graph.DecodeTensor(&pb, graph.DefaultLimits)
		if err != nil {
			return nil, fmt.Errorf("%w: state %q: %w", ErrInvalid, nb, err)
		}
		s.Slots[string(nb)] = t
	}
	return s, nil
}
