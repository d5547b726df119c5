package exec

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec/compress"
)

// Resident names of local rounds (Rounds). A session keeps, for each
// parameter, an anchor (the global value the round started from) and the
// residual of its compressed deltas (error feedback: what rounding left
// out of the last delta is added to the next). Deltas and updates cover
// all the part's parameters at once, concatenated in the order of the
// part graph's Learnables, so that a round costs one call each way.
const (
	anchorPrefix = "anchor/"
	deltaPrefix  = "delta/"
	// UpdateName is the resident name under which Put applies the round's
	// update: a delta tensor (PackDelta) of all the part's parameters,
	// which is added to their anchors; the sums become both the
	// parameters and the new anchors. The solver state is kept.
	UpdateName = "update"
)

// AnchorName is the resident name of parameter id's anchor. Put sets both
// the parameter and its anchor to the tensor and clears the residual (a
// replica joining a round, or resynchronising); Get returns the anchor.
func AnchorName(id int64) string { return anchorPrefix + strconv.FormatInt(id, 10) }

// DeltaName is the resident name under which Get returns the change of
// all the part's parameters since their anchors, plus the residual,
// encoded with codec (package compress) and packed as a delta tensor
// (UnpackDelta reads it). Each Get keeps what the encoding dropped as the
// new residual, so it is not idempotent: read it once per round.
func DeltaName(codec compress.Codec) string { return deltaPrefix + codec.String() }

// PackDelta packs an encoded delta into a float32 tensor, the form in
// which it travels as a resident tensor: element 0 holds the payload's
// length in bytes, the rest the payload's bytes, padded with zeros to a
// whole element. The elements are bit patterns, not numbers.
func PackDelta(p []byte) *tensor.Dense {
	n := 1 + (len(p)+3)/4
	buf := make([]byte, 4*n)
	binary.LittleEndian.PutUint32(buf, uint32(len(p)))
	copy(buf[4:], p)
	f := make([]float32, n)
	for i := range f {
		f[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:]))
	}
	return tensor.New(tensor.WithShape(n), tensor.WithBacking(f))
}

// UnpackDelta returns the payload PackDelta packed into t. A tensor that
// is not such a packing gives an error matching compress.ErrMalformed.
func UnpackDelta(t *tensor.Dense) ([]byte, error) {
	if t == nil || t.Dtype() != tensor.Float32 || t.Dims() != 1 {
		return nil, &compress.FormatError{Offset: 0, Reason: "a delta travels as a 1-d float32 tensor"}
	}
	f, ok := t.Data().([]float32)
	if !ok || len(f) == 0 {
		return nil, &compress.FormatError{Offset: 0, Reason: "empty delta tensor"}
	}
	n := int64(math.Float32bits(f[0]))
	if n > 4*int64(len(f)-1) || n <= 4*int64(len(f)-2) {
		return nil, &compress.FormatError{Offset: 0, Reason: fmt.Sprintf("payload of %d bytes in %d elements", n, len(f))}
	}
	buf := make([]byte, 4*(len(f)-1))
	for i, v := range f[1:] {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
	}
	for i, b := range buf[n:] {
		if b != 0 {
			return nil, &compress.FormatError{Offset: 4 + int(n) + i, Reason: "padding is not zero"}
		}
	}
	return buf[:n], nil
}

// ApplyDelta returns anchor + u, element by element, computed in
// anchor's dtype as both sides of a round compute it, so that requester
// and replicas hold bit-identical values.
func ApplyDelta(anchor *tensor.Dense, u []float64) (*tensor.Dense, error) {
	switch a := anchor.Data().(type) {
	case []float32:
		if len(a) != len(u) {
			return nil, fmt.Errorf("%w: delta of %d values for %d", ErrSpec, len(u), len(a))
		}
		out := make([]float32, len(a))
		for i := range a {
			out[i] = float32(float64(a[i]) + u[i])
		}
		return tensor.New(tensor.WithShape(anchor.Shape().Clone()...), tensor.WithBacking(out)), nil
	case []float64:
		if len(a) != len(u) {
			return nil, fmt.Errorf("%w: delta of %d values for %d", ErrSpec, len(u), len(a))
		}
		out := make([]float64, len(a))
		for i := range a {
			out[i] = a[i] + u[i]
		}
		return tensor.New(tensor.WithShape(anchor.Shape().Clone()...), tensor.WithBacking(out)), nil
	}
	return nil, fmt.Errorf("%w: parameter of dtype %v", ErrSpec, anchor.Dtype())
}

// floats64 returns t's values as float64s (a copy).
func floats64(t *tensor.Dense) []float64 {
	switch d := t.Data().(type) {
	case []float32:
		out := make([]float64, len(d))
		for i, v := range d {
			out[i] = float64(v)
		}
		return out
	case []float64:
		return append([]float64{}, d...)
	}
	return nil
}

// roundState is a session's anchors and the residual of its deltas.
type roundState struct {
	anchor   map[int]*tensor.Dense // by parameter index
	residual []float64             // all parameters, concatenated
}

// putAnchor sets parameter i (node id) and its anchor to t, and clears
// the residual.
func (s *Store) putAnchor(i int, id int64, name string, t *tensor.Dense) error {
	if err := s.check(id, name, t); err != nil {
		return err
	}
	if err := s.params.SetParam(i, t); err != nil {
		return s.paramErr(name, "put", err)
	}
	if s.rounds.anchor == nil {
		s.rounds.anchor = make(map[int]*tensor.Dense)
	}
	s.rounds.anchor[i] = cloneDense(t)
	s.rounds.residual = nil
	return nil
}

// anchors returns every parameter's anchor, and their total size; an
// *OrderError names the first parameter without one.
func (s *Store) anchors(what string) ([]*tensor.Dense, int, error) {
	out := make([]*tensor.Dense, len(s.learn))
	n := 0
	for i, id := range s.learn {
		a, ok := s.rounds.anchor[i]
		if !ok {
			return nil, 0, &OrderError{Part: s.part, MicroBatch: -1, Reason: what + " before the anchor " + AnchorName(id) + " was put"}
		}
		out[i] = a
		n += a.Shape().TotalSize()
	}
	return out, n, nil
}

// putUpdate applies the packed update t to the anchors.
func (s *Store) putUpdate(t *tensor.Dense) error {
	as, n, err := s.anchors("update put")
	if err != nil {
		return err
	}
	bad := func(err error) error {
		return &FeedError{Part: s.part, Node: -1, Name: UpdateName, MicroBatch: -1, Reason: err.Error()}
	}
	p, err := UnpackDelta(t)
	if err != nil {
		return bad(err)
	}
	u, err := compress.Decode(p, n)
	if err != nil {
		return bad(err)
	}
	next := make([]*tensor.Dense, len(as))
	off := 0
	for i, a := range as {
		m := a.Shape().TotalSize()
		if next[i], err = ApplyDelta(a, u[off:off+m]); err != nil {
			return err
		}
		off += m
	}
	for i, t := range next {
		if err := s.params.SetParam(i, t); err != nil {
			return s.paramErr(UpdateName, "put", err)
		}
		s.rounds.anchor[i] = t
	}
	return nil
}

// getDelta encodes the parameters' change since their anchors, plus the
// residual, and keeps what the encoding dropped as the new residual.
func (s *Store) getDelta(name string, codec compress.Codec) (*tensor.Dense, error) {
	as, n, err := s.anchors("delta read")
	if err != nil {
		return nil, err
	}
	d := make([]float64, 0, n)
	for i, a := range as {
		cur, err := s.params.Param(i)
		if err != nil {
			return nil, s.paramErr(name, "get", err)
		}
		c, av := floats64(cur), floats64(a)
		for j := range c {
			c[j] -= av[j]
		}
		d = append(d, c...)
	}
	if s.rounds.residual != nil {
		for j := range d {
			d[j] += s.rounds.residual[j]
		}
	}
	p, err := compress.Encode(codec, d)
	if err != nil {
		return nil, &RunError{Part: s.part, MicroBatch: -1, Phase: "get", Err: err}
	}
	back, err := compress.Decode(p, len(d))
	if err != nil {
		return nil, &RunError{Part: s.part, MicroBatch: -1, Phase: "get", Err: err}
	}
	for j := range d {
		d[j] -= back[j]
	}
	s.rounds.residual = d
	return PackDelta(p), nil
}

// roundName reads a name of local rounds: its kind (anchorPrefix,
// deltaPrefix or UpdateName), the parameter's id for an anchor, the codec
// for a delta. ok is false for any other name; bad is set for a delta
// name with an unknown codec.
func roundName(name string) (kind string, id int64, codec compress.Codec, ok bool) {
	if name == UpdateName {
		return UpdateName, 0, 0, true
	}
	if id, rest, found := parseID(name, anchorPrefix); found && rest == "" {
		return anchorPrefix, id, 0, true
	}
	if rest, found := strings.CutPrefix(name, deltaPrefix); found {
		c, err := compress.ParseCodec(rest)
		return deltaPrefix, 0, c, err == nil
	}
	return "", 0, 0, false
}
