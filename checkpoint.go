package rookery

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"

	"google.golang.org/protobuf/proto"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// ErrCheckpoint marks a checkpoint that cannot be read or does not fit
// the graph given to NewTrainer.
var ErrCheckpoint = errors.New("rookery: bad checkpoint")

// CheckpointError says what is wrong with a checkpoint.
type CheckpointError struct {
	Node   int64 // -1 when not about one node
	Reason string
}

func (e *CheckpointError) Error() string {
	if e.Node < 0 {
		return "rookery: checkpoint: " + e.Reason
	}
	return fmt.Sprintf("rookery: checkpoint: node %d: %s", e.Node, e.Reason)
}

// Is makes errors.Is(err, ErrCheckpoint) true.
func (e *CheckpointError) Is(t error) bool { return t == ErrCheckpoint }

// The checkpoint container, version 1, all integers little-endian:
//
//	magic    "RKRYCKPT" (8 bytes)
//	version  uint32 (1)
//	steps    uint64: Trainer.Steps when it was written
//	graph    uint64 length, then the graph in the rookery.v1 encoding,
//	         learnables with their values (what Save writes)
//	state    uint32 count, then per entry: uint32 name length, the name
//	         (exec.StateName of a parameter and a solver slot), uint64
//	         length, a rookery.v1 Tensor message
//
// The optimiser's update count is steps. Entries are sorted by name, so
// the same state gives the same bytes.
const (
	checkpointMagic   = "RKRYCKPT"
	checkpointVersion = 1
	// maxCheckpointEntry bounds one length read from a checkpoint before
	// anything is allocated.
	maxCheckpointEntry = 1 << 40
)

// Steps returns the number of Steps taken, counting those before the
// checkpoint the trainer resumed from.
func (t *Trainer) Steps() int { return t.steps }

// Checkpoint writes the whole state of the training run: the graph with
// the current parameters, every part's optimiser state and the number of
// steps. A trainer made with WithCheckpoint from it continues the run as
// if it had not stopped.
func (t *Trainer) Checkpoint(ctx context.Context, w io.Writer) error {
	params, err := t.pipe.Params(ctx)
	if err != nil {
		return err
	}
	state := make(map[string]*tensor.Dense)
	slots := t.solverSlots()
	for i, spec := range t.pipe.Layout().Specs {
		var names []string
		for _, id := range spec.Graph.Learnables() {
			for _, slot := range slots {
				names = append(names, exec.StateName(id, slot))
			}
		}
		if len(names) == 0 {
			continue
		}
		got, err := t.pipe.Sessions()[i].Get(ctx, names...)
		if err != nil {
			return err
		}
		for _, n := range names {
			state[n] = got[n]
		}
	}
	var b bytes.Buffer
	b.WriteString(checkpointMagic)
	le := binary.LittleEndian
	b.Write(le.AppendUint32(nil, checkpointVersion))
	b.Write(le.AppendUint64(nil, uint64(t.steps)))
	gb, err := t.modelBytes(params)
	if err != nil {
		return err
	}
	b.Write(le.AppendUint64(nil, uint64(len(gb))))
	b.Write(gb)
	names := make([]string, 0, len(state))
	for n := range state {
		names = append(names, n)
	}
	sort.Strings(names)
	b.Write(le.AppendUint32(nil, uint32(len(names))))
	for _, n := range names {
		pb, err := graph.EncodeTensor(state[n])
		if err != nil {
			return err
		}
		tb, err := proto.Marshal(pb)
		if err != nil {
			return err
		}
		b.Write(le.AppendUint32(nil, uint32(len(n))))
		b.WriteString(n)
		b.Write(le.AppendUint64(nil, uint64(len(tb))))
		b.Write(tb)
	}
	_, err = w.Write(b.Bytes())
	return err
}

func (t *Trainer) solverSlots() []string {
	s, err := exec.NewSolver(t.solver, 0)
	if err != nil {
		return nil
	}
	return s.Slots()
}

// modelBytes encodes the IR with params as the learnables' values.
func (t *Trainer) modelBytes(params map[int64]*tensor.Dense) ([]byte, error) {
	out := graph.New()
	for _, n := range t.ir.Nodes() {
		if n.Role == graph.RoleLearnable {
			if v, ok := params[n.ID]; ok {
				n.Value = v
			}
		}
		if err := out.Add(n); err != nil {
			return nil, err
		}
	}
	return out.MarshalBinary()
}

// checkpoint is a decoded checkpoint.
type checkpoint struct {
	steps int
	g     *graph.Graph
	state map[string]*tensor.Dense
}

func readCheckpoint(r io.Reader) (*checkpoint, error) {
	bad := func(format string, args ...any) error {
		return &CheckpointError{Node: -1, Reason: fmt.Sprintf(format, args...)}
	}
	le := binary.LittleEndian
	head := make([]byte, len(checkpointMagic)+4+8)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, bad("reading the header: %v", err)
	}
	if string(head[:8]) != checkpointMagic {
		return nil, bad("not a checkpoint (magic %q)", head[:8])
	}
	if v := le.Uint32(head[8:]); v != checkpointVersion {
		return nil, bad("version %d, this build reads version %d", v, checkpointVersion)
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
		if n > maxCheckpointEntry {
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
		return nil, fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	n, err := readN(4)
	if err != nil {
		return nil, err
	}
	c := &checkpoint{steps: int(steps), g: g, state: make(map[string]*tensor.Dense)}
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
			return nil, fmt.Errorf("%w: state %q: %w", ErrCheckpoint, nb, err)
		}
		c.state[string(nb)] = t
	}
	return c, nil
}

// apply checks that the checkpoint is of ir and copies its parameter
// values into ir.
func (c *checkpoint) apply(ir *graph.Graph) error {
	if c.g.Len() != ir.Len() {
		return &CheckpointError{Node: -1, Reason: fmt.Sprintf("%d nodes, the graph has %d", c.g.Len(), ir.Len())}
	}
	for _, n := range ir.Nodes() {
		cn, ok := c.g.Node(n.ID)
		if !ok {
			return &CheckpointError{Node: n.ID, Reason: "not in the checkpoint"}
		}
		if cn.Role != n.Role || cn.Op.Kind != n.Op.Kind || cn.DType != n.DType || !cn.Shape.Eq(n.Shape) || fmt.Sprint(cn.Inputs) != fmt.Sprint(n.Inputs) {
			return &CheckpointError{Node: n.ID, Reason: fmt.Sprintf("checkpoint has %v %v %v %v of %v, the graph %v %v %v %v of %v",
				cn.Role, cn.Op.Kind, cn.DType, cn.Shape, cn.Inputs, n.Role, n.Op.Kind, n.DType, n.Shape, n.Inputs)}
		}
		if n.Role == graph.RoleLearnable {
			if cn.Value == nil {
				return &CheckpointError{Node: n.ID, Reason: "parameter has no value"}
			}
			in, _ := ir.Node(n.ID)
			in.Value = cn.Value
		}
	}
	return nil
}

// restore puts the optimiser state and update count into every part.
func (c *checkpoint) restore(ctx context.Context, p *exec.Pipeline) error {
	for i, spec := range p.Layout().Specs {
		ids := spec.Graph.Learnables()
		if len(ids) == 0 {
			continue
		}
		s := p.Sessions()[i]
		for _, id := range ids {
			prefix := exec.ParamName(id) + "/"
			names := make([]string, 0, 2)
			for n := range c.state {
				if len(n) > len(prefix) && n[:len(prefix)] == prefix {
					names = append(names, n)
				}
			}
			sort.Strings(names)
			for _, n := range names {
				if err := s.Put(ctx, n, c.state[n]); err != nil {
					return fmt.Errorf("%w: restoring %s: %w", ErrCheckpoint, n, err)
				}
			}
		}
		if err := s.Put(ctx, exec.SolverStepName, tensor.New(tensor.FromScalar(c.steps))); err != nil {
			return fmt.Errorf("%w: restoring the update count: %w", ErrCheckpoint, err)
		}
	}
	return nil
}
