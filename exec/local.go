package exec

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec/compress"
	"github.com/rookery-ml/rookery/graph"
)

// shardPrefix starts the resident name of a data shard.
const shardPrefix = "shard/"

// ShardName is the resident name of the data shard of data input id: a
// tensor of the input's dtype whose rows (axis 0) are the examples a
// session draws its mini-batches from in LocalSteps. Its other axes are
// those of the input's node.
func ShardName(id int64) string { return shardPrefix + strconv.FormatInt(id, 10) }

// LocalRequest asks a session that holds a whole model (one part, with
// the loss) and a data shard for each of its data inputs (ShardName) to
// train on its own: Steps mini-batches, each the node's batch of rows of
// the shard, drawn in the order StreamRows gives for Seed from position
// Start on. Each step is a Forward, a Backward and a Step of micro-batch
// 0.
//
// A round of Rounds costs one call: Update, when set, is applied before
// the steps as a Put of UpdateName would apply it (the encoded update,
// package compress, without PackDelta's packing), and Delta, when set,
// asks for the parameters' change since their anchors after the steps,
// encoded with that codec, as a Get of DeltaName would return it.
type LocalRequest struct {
	Steps  int
	Seed   uint64
	Start  int64
	Update []byte
	Delta  compress.Codec
}

// LocalResult is what LocalSteps did: the steps taken, the rows they
// used, and the mean of their losses (each measured before its update).
type LocalResult struct {
	Steps int
	Rows  int64
	Loss  float64
	// Delta is the encoded delta asked for with LocalRequest.Delta.
	Delta []byte
}

// LocalStepper is a Session that trains local steps itself, so that a
// whole round costs one call: the in-process CPU session does, and so does
// a remote session, whose provider runs the steps next to its data.
type LocalStepper interface {
	LocalSteps(ctx context.Context, req LocalRequest) (LocalResult, error)
}

// MaxLocalSteps is the most steps one LocalRequest may ask for.
const MaxLocalSteps = 1 << 20

// Validate checks the request's figures.
func (r LocalRequest) Validate() error {
	if r.Steps < 1 || r.Steps > MaxLocalSteps {
		return fmt.Errorf("%w: %d local steps, want 1 to %d", ErrSpec, r.Steps, MaxLocalSteps)
	}
	if r.Start < 0 {
		return fmt.Errorf("%w: local steps start at row %d of the stream", ErrSpec, r.Start)
	}
	if r.Delta != 0 && compress.Size(r.Delta, 0) < 0 {
		return fmt.Errorf("%w: delta codec %v", ErrSpec, r.Delta)
	}
	return nil
}

// LocalSteps runs req on s, whose spec is spec: through s's own
// LocalSteps where s is a LocalStepper, and otherwise by driving s from
// here, reading the shards with Get.
func LocalSteps(ctx context.Context, s Session, spec *SessionSpec, req LocalRequest) (LocalResult, error) {
	if ls, ok := s.(LocalStepper); ok {
		return ls.LocalSteps(ctx, req)
	}
	return RoundIO(ctx, s, req, func(req LocalRequest) (LocalResult, error) {
		return RunLocalSteps(ctx, s, spec, func(id int64) (*tensor.Dense, error) {
			got, err := s.Get(ctx, ShardName(id))
			if err != nil {
				return nil, err
			}
			return got[ShardName(id)], nil
		}, req)
	})
}

// RoundIO carries out req on s with steps, which takes the steps: it
// applies req.Update first, with a Put of UpdateName, and reads the delta
// req.Delta asks for afterwards, with a Get of DeltaName. A LocalStepper
// that has no shorter way calls it.
func RoundIO(ctx context.Context, s Session, req LocalRequest, steps func(LocalRequest) (LocalResult, error)) (LocalResult, error) {
	if err := req.Validate(); err != nil {
		return LocalResult{}, err
	}
	if len(req.Update) > 0 {
		if err := s.Put(ctx, UpdateName, PackDelta(req.Update)); err != nil {
			return LocalResult{}, err
		}
	}
	res, err := steps(req)
	if err != nil || req.Delta == 0 {
		return res, err
	}
	name := DeltaName(req.Delta)
	got, err := s.Get(ctx, name)
	if err != nil {
		return res, err
	}
	res.Delta, err = UnpackDelta(got[name])
	return res, err
}

// RunLocalSteps carries out req on s (of spec), taking the shard of each
// data input from shard. Executors that implement LocalStepper call it
// with their own resident shards. A spec that is not a whole model with
// one micro-batch, or shards that do not fit the data inputs, give an
// error matching ErrSpec; cancelling ctx stops between two steps, with the
// steps taken so far applied.
func RunLocalSteps(ctx context.Context, s Session, spec *SessionSpec, shard func(id int64) (*tensor.Dense, error), req LocalRequest) (LocalResult, error) {
	var res LocalResult
	if err := req.Validate(); err != nil {
		return res, err
	}
	if !spec.HasLoss || len(spec.Inputs) != 0 || len(spec.Outputs) != 0 {
		return res, &SpecError{Part: spec.Part, Node: -1, Reason: "local steps need a whole model in one part"}
	}
	if spec.MicroBatchCount() != 1 {
		return res, &SpecError{Part: spec.Part, Node: -1, Reason: fmt.Sprintf("local steps need 1 micro-batch, the session holds %d", spec.MicroBatchCount())}
	}
	if len(spec.DataInputs) == 0 {
		return res, &SpecError{Part: spec.Part, Node: -1, Reason: "local steps need data inputs"}
	}
	shards := make([]*tensor.Dense, len(spec.DataInputs))
	nodes := make([]*graph.Node, len(spec.DataInputs))
	rows, batch := -1, -1
	for i, id := range spec.DataInputs {
		n, _ := spec.Graph.Node(id)
		t, err := shard(id)
		if err != nil {
			return res, err
		}
		if err := checkShard(spec.Part, n, t); err != nil {
			return res, err
		}
		if rows >= 0 && t.Shape()[0] != rows {
			return res, &SpecError{Part: spec.Part, Node: id, Reason: fmt.Sprintf("shard has %d rows, another has %d", t.Shape()[0], rows)}
		}
		shards[i], nodes[i], rows, batch = t, n, t.Shape()[0], n.Shape[0]
	}
	if rows < batch {
		return res, &SpecError{Part: spec.Part, Node: spec.DataInputs[0], Reason: fmt.Sprintf("shard of %d rows is smaller than the batch of %d", rows, batch)}
	}
	feeds := make(map[int64]*tensor.Dense, len(nodes))
	bufs := make([]*tensor.Dense, len(nodes))
	for i, n := range nodes {
		bufs[i] = tensor.New(tensor.WithShape(n.Shape.Clone()...), tensor.Of(shards[i].Dtype()))
		feeds[n.ID] = bufs[i]
	}
	stream := newRowStream(req.Seed, rows, req.Start)
	idx := make([]int, batch)
	var sum float64
	for step := 0; step < req.Steps; step++ {
		if err := ctx.Err(); err != nil {
			return finish(res, sum), err
		}
		for j := range idx {
			idx[j] = stream.next()
		}
		for i := range bufs {
			gatherRows(bufs[i], shards[i], idx)
		}
		out, err := s.Forward(ctx, 0, feeds)
		if err != nil {
			return finish(res, sum), err
		}
		if _, err := s.Backward(ctx, 0, nil); err != nil {
			return finish(res, sum), err
		}
		if err := s.Step(ctx); err != nil {
			return finish(res, sum), err
		}
		if l, ok := out[spec.Loss]; ok {
			sum += scalarOf(l)
		}
		res.Steps++
		res.Rows += int64(batch)
	}
	return finish(res, sum), nil
}

func finish(res LocalResult, sum float64) LocalResult {
	if res.Steps > 0 {
		res.Loss = sum / float64(res.Steps)
	}
	return res
}

// checkShard checks that t can be the shard of data input n: its dtype,
// at least one row, and n's shape after axis 0.
func checkShard(part int, n *graph.Node, t *tensor.Dense) error {
	bad := func(reason string) error {
		return &FeedError{Part: part, Node: n.ID, Name: ShardName(n.ID), MicroBatch: -1, Reason: reason}
	}
	if t == nil {
		return bad("no shard: Put " + ShardName(n.ID))
	}
	if len(n.Shape) == 0 {
		return bad("the input has no batch axis")
	}
	dt, err := graph.DTypeOf(t.Dtype())
	if err != nil || dt != n.DType {
		return bad(fmt.Sprintf("shard of dtype %v, the input is %v", t.Dtype(), n.DType))
	}
	sh := t.Shape()
	if len(sh) != len(n.Shape) || sh[0] < 1 {
		return bad(fmt.Sprintf("shard of shape %v for an input of shape %v", sh, n.Shape))
	}
	for i := 1; i < len(sh); i++ {
		if sh[i] != n.Shape[i] {
			return bad(fmt.Sprintf("shard of shape %v for an input of shape %v", sh, n.Shape))
		}
	}
	if !t.IsNativelyAccessible() || t.RequiresIterator() {
		return bad("shard is not a contiguous tensor")
	}
	return nil
}

// gatherRows copies rows idx of src into dst, row by row.
func gatherRows(dst, src *tensor.Dense, idx []int) {
	w := 1
	for _, d := range dst.Shape()[1:] {
		w *= d
	}
	switch d := dst.Data().(type) {
	case []float32:
		s := src.Data().([]float32)
		for j, r := range idx {
			copy(d[j*w:(j+1)*w], s[r*w:(r+1)*w])
		}
	case []float64:
		s := src.Data().([]float64)
		for j, r := range idx {
			copy(d[j*w:(j+1)*w], s[r*w:(r+1)*w])
		}
	case []int:
		s := src.Data().([]int)
		for j, r := range idx {
			copy(d[j*w:(j+1)*w], s[r*w:(r+1)*w])
		}
	case []bool:
		s := src.Data().([]bool)
		for j, r := range idx {
			copy(d[j*w:(j+1)*w], s[r*w:(r+1)*w])
		}
	}
}

// StreamRows returns count rows of the stream of row indexes that seed
// gives for a shard of n rows, from position start on. The stream is
// epoch after epoch of [0, n): epoch e is a permutation drawn from seed
// and e, so every row is used once per epoch. Requester and provider draw
// the same stream from the same seed.
func StreamRows(seed uint64, n int, start int64, count int) []int {
	s := newRowStream(seed, n, start)
	out := make([]int, count)
	for i := range out {
		out[i] = s.next()
	}
	return out
}

type rowStream struct {
	seed  uint64
	n     int
	epoch int64
	pos   int
	perm  []int
}

func newRowStream(seed uint64, n int, start int64) *rowStream {
	s := &rowStream{seed: seed, n: n, epoch: start / int64(n), pos: int(start % int64(n))}
	s.shuffle()
	return s
}

func (s *rowStream) shuffle() {
	if s.perm == nil {
		s.perm = make([]int, s.n)
	}
	for i := range s.perm {
		s.perm[i] = i
	}
	r := rand.New(rand.NewPCG(s.seed, uint64(s.epoch)))
	r.Shuffle(s.n, func(i, j int) { s.perm[i], s.perm[j] = s.perm[j], s.perm[i] })
}

func (s *rowStream) next() int {
	if s.pos == s.n {
		s.epoch++
		s.pos = 0
		s.shuffle()
	}
	v := s.perm[s.pos]
	s.pos++
	return v
}
