package exec

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/graph"
)

// Resident tensor names.
const (
	paramPrefix = "param/"
	inputPrefix = "input/"
	gradPrefix  = "grad/"
)

// ParamName is the resident name of learnable parameter id.
func ParamName(id int64) string { return paramPrefix + strconv.FormatInt(id, 10) }

// StateName is the resident name of the solver state slot of parameter id
// ("velocity" for SGD with momentum, "m" and "v" for Adam, "cache" for
// RMSProp).
func StateName(id int64, slot string) string { return ParamName(id) + "/" + slot }

// SolverStepName is the resident name of the solver's update count: Get
// returns it as an int scalar, and Put of an int scalar restores it (a
// snapshot needs it, since Adam's bias correction and the learning-rate
// schedules depend on it).
const SolverStepName = "solver/step"

// GradName is the resident name of the gradient of learnable parameter id
// accumulated since the last Step: the sum of the gradients of the
// micro-batches run backward since then (Step applies it divided by their
// number). Get returns it (zeros before any Backward); Put replaces it, so
// that a Step after it applies the value Put. Data-parallel replicas
// (Replicas) exchange their gradients this way.
func GradName(id int64) string { return gradPrefix + strconv.FormatInt(id, 10) }

// ParseGradName reads a name made by GradName: the parameter's id. ok is
// false for any other name.
func ParseGradName(name string) (id int64, ok bool) {
	id, rest, ok := parseID(name, gradPrefix)
	return id, ok && rest == ""
}

// InputName is the resident name under which a tensor stands in for input
// id when Forward's feeds lack it (a data shard kept on the executor).
func InputName(id int64) string { return inputPrefix + strconv.FormatInt(id, 10) }

// ParseParamName reads a name made by ParamName or StateName: the
// parameter's id, and the solver slot ("" for the parameter itself). ok is
// false for any other name.
func ParseParamName(name string) (id int64, slot string, ok bool) {
	return parseID(name, paramPrefix)
}

// ParseInputName reads a name made by InputName: the input's id. ok is
// false for any other name.
func ParseInputName(name string) (id int64, ok bool) {
	id, rest, ok := parseID(name, inputPrefix)
	return id, ok && rest == ""
}

// parseID reads the id after prefix in name, and whatever follows it.
func parseID(name, prefix string) (id int64, rest string, ok bool) {
	if !strings.HasPrefix(name, prefix) {
		return 0, "", false
	}
	s := name[len(prefix):]
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s, rest = s[:i], s[i+1:]
	}
	id, err := strconv.ParseInt(s, 10, 64)
	return id, rest, err == nil
}

// CheckTensor checks that t has node n's dtype and shape (a scalar node
// takes a 0-d or a one-element tensor), as every executor must of the
// tensors it is handed; it returns a *FeedError naming part, micro-batch
// and node, or nil.
func CheckTensor(part, microBatch int, n *graph.Node, t *tensor.Dense) error {
	return checkTensor(part, microBatch, n, t)
}

// ParamStore is where a session keeps its parameters, their solver state
// and the solver's update count: Go memory for the CPU executor, device
// buffers for the CUDA one. A Store serves their resident names with it.
// Parameter i is the i-th id of the part graph's Learnables; every tensor
// handed in has been checked against that node.
//
// An error of a setter that matches ErrUnknownName reaches the caller as
// a *NameError for the name; any other error as a *RunError of phase
// "put" or "get".
type ParamStore interface {
	// Steps returns the solver's update count; SetSteps sets it.
	Steps() int
	SetSteps(n int)
	// HasParam reports whether parameter i has a value.
	HasParam(i int) bool
	// Param returns a copy of parameter i's value.
	Param(i int) (*tensor.Dense, error)
	// SetParam sets parameter i's value to a copy of t.
	SetParam(i int, t *tensor.Dense) error
	// StateSlots names the solver state slots every parameter has.
	StateSlots() []string
	// State returns a copy of slot of parameter i's solver state (zeros
	// before the solver first wrote it). Only called for a slot of
	// StateSlots and a parameter that has a value.
	State(i int, slot string) (*tensor.Dense, error)
	// SetState sets slot of parameter i's solver state to a copy of t.
	// Only called for a slot of StateSlots and a parameter that has a
	// value.
	SetState(i int, slot string, t *tensor.Dense) error
	// Grad returns a copy of parameter i's gradient accumulated since
	// the last Step (GradName); SetGrad replaces it with a copy of t.
	Grad(i int) (*tensor.Dense, error)
	SetGrad(i int, t *tensor.Dense) error
}

// Store holds the resident tensors of one session and serves Put and Get
// by name, the same way for every executor: SolverStepName, ParamName,
// StateName and GradName reach the session's ParamStore; InputName stands in for an
// input that Forward's feeds lack; any other name holds whatever was Put.
// Errors name the part: a *FeedError for a nil or mis-shaped tensor, a
// *NameError for a name the part does not have, an *OrderError for solver
// state Put before its parameter.
//
// A Store is not safe for concurrent use; the session's lock guards it.
type Store struct {
	part     int
	g        *graph.Graph
	feeds    []int64       // the inputs, Inputs then DataInputs
	learn    []int64       // the learnable parameters, graph order
	learnIdx map[int64]int // id → index in learn
	params   ParamStore
	resident map[string]*tensor.Dense
	rounds   roundState
}

// NewStore returns the store of the session that spec (valid) describes,
// whose parameters, solver state and update count live in params.
func NewStore(spec *SessionSpec, params ParamStore) *Store {
	s := &Store{
		part:     spec.Part,
		g:        spec.Graph,
		feeds:    append(append([]int64{}, spec.Inputs...), spec.DataInputs...),
		learn:    spec.Graph.Learnables(),
		learnIdx: make(map[int64]int),
		params:   params,
		resident: make(map[string]*tensor.Dense),
	}
	for i, id := range s.learn {
		s.learnIdx[id] = i
	}
	return s
}

// FeedIDs returns the ids of the part's inputs in the order Feeds returns
// their values: SessionSpec.Inputs, then DataInputs. The caller must not
// change it.
func (s *Store) FeedIDs() []int64 { return s.feeds }

// IsFeed reports whether id is an input of the part.
func (s *Store) IsFeed(id int64) bool { return slices.Contains(s.feeds, id) }

// Put stores t under name. SolverStepName takes an int scalar; a
// parameter or its solver state goes to the ParamStore; anything else is
// held here, as a copy or, with keep set and t's data contiguous, as t
// itself (the caller then must not change t).
func (s *Store) Put(name string, t *tensor.Dense, keep bool) error {
	if t == nil {
		return &FeedError{Part: s.part, Node: -1, Name: name, MicroBatch: -1, Reason: "nil tensor"}
	}
	if name == SolverStepName {
		v, ok := t.Data().(int)
		if !ok {
			return &FeedError{Part: s.part, Node: -1, Name: name, MicroBatch: -1, Reason: "want an int scalar"}
		}
		s.params.SetSteps(v)
		return nil
	}
	if id, slot, ok := ParseParamName(name); ok {
		i, isParam := s.learnIdx[id]
		if !isParam {
			return &NameError{Part: s.part, Name: name}
		}
		if err := s.check(id, name, t); err != nil {
			return err
		}
		var err error
		switch {
		case slot == "":
			err = s.params.SetParam(i, t)
		case !s.params.HasParam(i):
			return &OrderError{Part: s.part, MicroBatch: -1, Reason: "solver state put before its parameter " + ParamName(id)}
		case !slices.Contains(s.params.StateSlots(), slot):
			return &NameError{Part: s.part, Name: name}
		default:
			err = s.params.SetState(i, slot, t)
		}
		return s.paramErr(name, "put", err)
	}
	if id, ok := ParseGradName(name); ok {
		i, isParam := s.learnIdx[id]
		if !isParam {
			return &NameError{Part: s.part, Name: name}
		}
		if err := s.check(id, name, t); err != nil {
			return err
		}
		return s.paramErr(name, "put", s.params.SetGrad(i, t))
	}
	if kind, id, _, ok := roundName(name); ok {
		switch kind {
		case anchorPrefix:
			i, isParam := s.learnIdx[id]
			if !isParam {
				return &NameError{Part: s.part, Name: name}
			}
			return s.putAnchor(i, id, name, t)
		case UpdateName:
			return s.putUpdate(t)
		}
		return &NameError{Part: s.part, Name: name}
	}
	if id, ok := ParseInputName(name); ok {
		if !s.IsFeed(id) {
			return &NameError{Part: s.part, Name: name}
		}
		if err := s.check(id, name, t); err != nil {
			return err
		}
	}
	if keep && t.IsNativelyAccessible() && !t.RequiresIterator() {
		s.resident[name] = t
		return nil
	}
	s.resident[name] = cloneDense(t)
	return nil
}

// Get returns copies of the tensors under names; a name the session does
// not hold gives a *NameError.
func (s *Store) Get(names ...string) (map[string]*tensor.Dense, error) {
	out := make(map[string]*tensor.Dense, len(names))
	for _, name := range names {
		t, err := s.get(name)
		if err != nil {
			return nil, err
		}
		out[name] = t
	}
	return out, nil
}

func (s *Store) get(name string) (*tensor.Dense, error) {
	if name == SolverStepName {
		return tensor.New(tensor.FromScalar(s.params.Steps())), nil
	}
	if id, slot, ok := ParseParamName(name); ok {
		i, isParam := s.learnIdx[id]
		if !isParam || !s.params.HasParam(i) {
			return nil, &NameError{Part: s.part, Name: name}
		}
		if slot == "" {
			t, err := s.params.Param(i)
			return t, s.paramErr(name, "get", err)
		}
		if !slices.Contains(s.params.StateSlots(), slot) {
			return nil, &NameError{Part: s.part, Name: name}
		}
		t, err := s.params.State(i, slot)
		return t, s.paramErr(name, "get", err)
	}
	if id, ok := ParseGradName(name); ok {
		i, isParam := s.learnIdx[id]
		if !isParam {
			return nil, &NameError{Part: s.part, Name: name}
		}
		t, err := s.params.Grad(i)
		return t, s.paramErr(name, "get", err)
	}
	if kind, id, codec, ok := roundName(name); ok {
		switch kind {
		case anchorPrefix:
			if i, isParam := s.learnIdx[id]; isParam {
				if a, ok := s.rounds.anchor[i]; ok {
					return cloneDense(a), nil
				}
			}
		case deltaPrefix:
			return s.getDelta(name, codec)
		}
		return nil, &NameError{Part: s.part, Name: name}
	}
	t, ok := s.resident[name]
	if !ok {
		return nil, &NameError{Part: s.part, Name: name}
	}
	return cloneDense(t), nil
}

// Input returns the resident tensor that stands in for input id
// (InputName), if one was Put. The caller must not change it.
func (s *Store) Input(id int64) (*tensor.Dense, bool) {
	t, ok := s.resident[InputName(id)]
	return t, ok
}

// Feeds returns, for micro-batch mb, the value of every input of the part
// in FeedIDs order, taken from feeds or else from the resident inputs
// (fromResident says which), each checked against its node. It fails
// with a *FeedError for a feed that is not an input of the part, an
// input with no value, a value of the wrong dtype or shape, or a
// parameter that has no value yet.
func (s *Store) Feeds(mb int, feeds map[int64]*tensor.Dense) (vals []*tensor.Dense, fromResident []bool, err error) {
	for id := range feeds {
		if !s.IsFeed(id) {
			return nil, nil, &FeedError{Part: s.part, Node: id, MicroBatch: mb, Reason: "not an input of the part"}
		}
	}
	vals = make([]*tensor.Dense, len(s.feeds))
	fromResident = make([]bool, len(s.feeds))
	for i, id := range s.feeds {
		t, ok := feeds[id]
		if !ok {
			t, ok = s.Input(id)
			fromResident[i] = ok
		}
		n, _ := s.g.Node(id)
		if !ok {
			return nil, nil, &FeedError{Part: s.part, Node: id, MicroBatch: mb, Reason: fmt.Sprintf("missing feed for input %q", n.Name)}
		}
		if err := checkTensor(s.part, mb, n, t); err != nil {
			return nil, nil, err
		}
		vals[i] = t
	}
	for i, id := range s.learn {
		if !s.params.HasParam(i) {
			return nil, nil, &FeedError{Part: s.part, Node: id, MicroBatch: mb, Reason: "parameter has no value: Put " + ParamName(id)}
		}
	}
	return vals, fromResident, nil
}

// Clear drops every tensor the store holds itself.
func (s *Store) Clear() { s.resident, s.rounds = nil, roundState{} }

// Shard returns the resident data shard of input id (ShardName), if one
// was Put. The caller must not change it.
func (s *Store) Shard(id int64) (*tensor.Dense, bool) {
	t, ok := s.resident[ShardName(id)]
	return t, ok
}

// check checks t, Put under name, against node id.
func (s *Store) check(id int64, name string, t *tensor.Dense) error {
	n, _ := s.g.Node(id)
	if err := checkTensor(s.part, -1, n, t); err != nil {
		err.(*FeedError).Name = name
		return err
	}
	return nil
}

// paramErr turns an error of the ParamStore into the error Put or Get
// returns.
func (s *Store) paramErr(name, phase string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrUnknownName):
		return &NameError{Part: s.part, Name: name}
	}
	return &RunError{Part: s.part, MicroBatch: -1, Phase: phase, Err: err}
}
