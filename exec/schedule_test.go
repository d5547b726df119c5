package exec

import (
	"errors"
	"fmt"
	"math/rand"
	"testing"
)

func chain(k int) [][]int {
	succ := make([][]int, k)
	for p := 0; p+1 < k; p++ {
		succ[p] = []int{p + 1}
	}
	return succ
}

// randomDAG returns successor lists of a random DAG over k parts whose
// edges go from lower to higher index, relabelled by a random permutation.
func randomDAG(r *rand.Rand, k int) [][]int {
	perm := r.Perm(k)
	succ := make([][]int, k)
	for a := 0; a < k; a++ {
		for b := a + 1; b < k; b++ {
			if r.Intn(3) == 0 || (b == a+1 && r.Intn(2) == 0) {
				succ[perm[a]] = append(succ[perm[a]], perm[b])
			}
		}
	}
	return succ
}

// checkAgainstGraph verifies the schedule against the part graph itself,
// independently of the Deps the schedule lists.
func checkAgainstGraph(t *testing.T, s *Schedule, succ [][]int) {
	t.Helper()
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	at := make(map[Task]int)
	for i, task := range s.Tasks {
		at[task] = i
	}
	for p, ss := range succ {
		for _, q := range ss {
			for mb := 0; mb < s.MicroBatches; mb++ {
				if at[Task{p, Forward, mb}] > at[Task{q, Forward, mb}] {
					t.Errorf("F%d@%d after F%d@%d", mb, p, mb, q)
				}
				if at[Task{q, Backward, mb}] > at[Task{p, Backward, mb}] {
					t.Errorf("B%d@%d after B%d@%d", mb, q, mb, p)
				}
			}
		}
	}
	for p, list := range s.PerPart {
		if len(list) != 2*s.MicroBatches {
			t.Fatalf("part %d runs %d tasks, want %d", p, len(list), 2*s.MicroBatches)
		}
		for i, ti := range list {
			task := s.Tasks[ti]
			want := Task{p, Forward, i}
			if i >= s.MicroBatches {
				want = Task{p, Backward, 2*s.MicroBatches - 1 - i}
			}
			if task != want {
				t.Errorf("part %d task %d is %v, want %v", p, i, task, want)
			}
			if i > 0 && list[i-1] >= ti {
				t.Errorf("part %d: tasks out of global order", p)
			}
		}
	}
}

func TestGPipeChain(t *testing.T) {
	for k := 1; k <= 5; k++ {
		for _, m := range []int{1, 2, 4, 7} {
			t.Run(fmt.Sprintf("k=%d/m=%d", k, m), func(t *testing.T) {
				succ := chain(k)
				s, err := GPipe(succ, m)
				if err != nil {
					t.Fatal(err)
				}
				checkAgainstGraph(t, s, succ)
			})
		}
	}
}

func TestGPipeChainOrder(t *testing.T) {
	s, err := GPipe(chain(2), 2)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(s.Tasks)
	want := "[F0@0 F1@0 F0@1 F1@1 B1@1 B0@1 B1@0 B0@0]"
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestGPipeRandomDAGs(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 200; i++ {
		k := 1 + r.Intn(8)
		m := 1 + r.Intn(5)
		succ := randomDAG(r, k)
		s, err := GPipe(succ, m)
		if err != nil {
			t.Fatalf("dag %v: %v", succ, err)
		}
		checkAgainstGraph(t, s, succ)
	}
}

func TestGPipeCheckCatchesViolations(t *testing.T) {
	s, err := GPipe(chain(3), 2)
	if err != nil {
		t.Fatal(err)
	}
	s.Tasks[0], s.Tasks[1] = s.Tasks[1], s.Tasks[0]
	s.Deps[0], s.Deps[1] = s.Deps[1], s.Deps[0]
	if err := s.Check(); err == nil {
		t.Error("Check accepted a swapped schedule")
	}
}

func TestGPipeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		succ [][]int
		m    int
	}{
		{"no parts", nil, 1},
		{"no micro-batches", chain(2), 0},
		{"cycle", [][]int{{1}, {0}}, 1},
		{"self loop", [][]int{{0}}, 1},
		{"out of range", [][]int{{3}}, 1},
	} {
		_, err := GPipe(tc.succ, tc.m)
		if !errors.Is(err, ErrSpec) {
			t.Errorf("%s: got %v, want ErrSpec", tc.name, err)
		}
	}
}
