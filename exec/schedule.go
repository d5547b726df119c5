package exec

import (
	"fmt"
	"sort"
)

// TaskKind says whether a task runs a micro-batch forward or backward.
type TaskKind uint8

// Task kinds.
const (
	Forward TaskKind = iota + 1
	Backward
)

func (k TaskKind) String() string {
	switch k {
	case Forward:
		return "F"
	case Backward:
		return "B"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Task is one unit of pipeline work: part Part runs micro-batch
// MicroBatch forward or backward.
type Task struct {
	Part       int
	Kind       TaskKind
	MicroBatch int
}

func (t Task) String() string { return fmt.Sprintf("%v%d@%d", t.Kind, t.MicroBatch, t.Part) }

// Schedule is the order of work of one training step. It says nothing
// about how tensors move: the pipeline driver reads it.
type Schedule struct {
	// Parts and MicroBatches are the dimensions it was built for.
	Parts, MicroBatches int
	// Tasks lists every task once, in an order that respects Deps.
	Tasks []Task
	// Deps[i] lists the indexes (into Tasks) of the tasks that must have
	// finished before Tasks[i] may start: the forward of the same
	// micro-batch on every predecessor part, the backward of the same
	// micro-batch on every successor part, the same micro-batch's forward
	// on the same part before its backward, and the task the part ran
	// before.
	Deps [][]int
	// PerPart[p] lists the indexes of part p's tasks in the order the part
	// runs them.
	PerPart [][]int
}

// GPipe returns the GPipe schedule for a graph of parts given by its
// successor lists (succ[p]: the parts that consume p's outputs) and m
// micro-batches. Every part runs the forwards of micro-batches 0…m−1, then
// their backwards in reverse order; part p works on micro-batch i+1 while
// its successors work on micro-batch i. The result is a pure function of
// its arguments.
func GPipe(succ [][]int, m int) (*Schedule, error) {
	k := len(succ)
	if k == 0 {
		return nil, fmt.Errorf("%w: no parts", ErrSpec)
	}
	if m < 1 {
		return nil, fmt.Errorf("%w: %d micro-batches", ErrSpec, m)
	}
	pred := make([][]int, k)
	for p, ss := range succ {
		for _, s := range ss {
			if s < 0 || s >= k || s == p {
				return nil, fmt.Errorf("%w: part %d has successor %d", ErrSpec, p, s)
			}
			pred[s] = append(pred[s], p)
		}
	}
	topo, err := topoOrder(succ, pred)
	if err != nil {
		return nil, err
	}
	// depth: longest path from a source part.
	depth := make([]int, k)
	maxDepth := 0
	for _, p := range topo {
		for _, q := range pred[p] {
			if depth[q]+1 > depth[p] {
				depth[p] = depth[q] + 1
			}
		}
		if depth[p] > maxDepth {
			maxDepth = depth[p]
		}
	}
	pos := make([]int, k)
	for i, p := range topo {
		pos[p] = i
	}
	type timed struct {
		t    Task
		tick int
	}
	all := make([]timed, 0, 2*k*m)
	fwdEnd := maxDepth + m
	for p := 0; p < k; p++ {
		for mb := 0; mb < m; mb++ {
			all = append(all, timed{Task{p, Forward, mb}, depth[p] + mb})
			all = append(all, timed{Task{p, Backward, mb}, fwdEnd + (maxDepth - depth[p]) + (m - 1 - mb)})
		}
	}
	sort.SliceStable(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.tick != b.tick {
			return a.tick < b.tick
		}
		if a.t.Kind != b.t.Kind {
			return a.t.Kind < b.t.Kind
		}
		if a.t.Kind == Forward {
			return pos[a.t.Part] < pos[b.t.Part]
		}
		return pos[a.t.Part] > pos[b.t.Part]
	})
	s := &Schedule{Parts: k, MicroBatches: m, Tasks: make([]Task, len(all)), Deps: make([][]int, len(all)), PerPart: make([][]int, k)}
	index := make(map[Task]int, len(all))
	for i, a := range all {
		s.Tasks[i] = a.t
		index[a.t] = i
	}
	for i, t := range s.Tasks {
		var deps []int
		switch t.Kind {
		case Forward:
			for _, q := range pred[t.Part] {
				deps = append(deps, index[Task{q, Forward, t.MicroBatch}])
			}
			if t.MicroBatch > 0 {
				deps = append(deps, index[Task{t.Part, Forward, t.MicroBatch - 1}])
			}
		case Backward:
			for _, q := range succ[t.Part] {
				deps = append(deps, index[Task{q, Backward, t.MicroBatch}])
			}
			deps = append(deps, index[Task{t.Part, Forward, t.MicroBatch}])
			if t.MicroBatch < m-1 {
				// the last micro-batch's backward follows its own forward,
				// which is the part's last forward
				deps = append(deps, index[Task{t.Part, Backward, t.MicroBatch + 1}])
			}
		}
		sort.Ints(deps)
		s.Deps[i] = dedup(deps)
		s.PerPart[t.Part] = append(s.PerPart[t.Part], i)
	}
	return s, nil
}

func dedup(s []int) []int {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// topoOrder orders the parts so that each comes after its predecessors,
// smallest index first among the ready ones; it fails on a cycle.
func topoOrder(succ, pred [][]int) ([]int, error) {
	k := len(succ)
	indeg := make([]int, k)
	for p := range pred {
		indeg[p] = len(pred[p])
	}
	var ready, order []int
	for p := 0; p < k; p++ {
		if indeg[p] == 0 {
			ready = append(ready, p)
		}
	}
	for len(ready) > 0 {
		sort.Ints(ready)
		p := ready[0]
		ready = ready[1:]
		order = append(order, p)
		for _, s := range succ[p] {
			indeg[s]--
			if indeg[s] == 0 {
				ready = append(ready, s)
			}
		}
	}
	if len(order) != k {
		return nil, fmt.Errorf("%w: the graph of parts has a cycle", ErrSpec)
	}
	return order, nil
}

// Check verifies that the schedule lists every (part, kind, micro-batch)
// once, that every task comes after all its dependencies, and that on
// every part each micro-batch's forward precedes its backward.
func (s *Schedule) Check() error {
	if len(s.Tasks) != 2*s.Parts*s.MicroBatches || len(s.Deps) != len(s.Tasks) {
		return fmt.Errorf("exec: schedule has %d tasks, want %d", len(s.Tasks), 2*s.Parts*s.MicroBatches)
	}
	seen := make(map[Task]int)
	for i, t := range s.Tasks {
		if _, dup := seen[t]; dup {
			return fmt.Errorf("exec: task %v listed twice", t)
		}
		seen[t] = i
		for _, d := range s.Deps[i] {
			if d >= i {
				return fmt.Errorf("exec: task %v at %d depends on %v at %d", t, i, s.Tasks[d], d)
			}
		}
	}
	for _, t := range s.Tasks {
		if t.Kind != Backward {
			continue
		}
		f, ok := seen[Task{t.Part, Forward, t.MicroBatch}]
		if !ok || f > seen[t] {
			return fmt.Errorf("exec: %v runs before its forward", t)
		}
	}
	return nil
}
