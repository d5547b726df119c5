package rookery_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"gorgonia.org/gorgonia"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/partition"
)

// params returns the trainer's parameters in m.learn order.
func params(t testing.TB, tr *rookery.Trainer, m *mlp) [][]float64 {
	t.Helper()
	got, err := tr.Pipeline().Params(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]float64, len(m.learn))
	for i, n := range m.learn {
		out[i] = append([]float64{}, got[int64(n.ID())].Float64s()...)
	}
	return out
}

func maxAbsDiff(a, b [][]float64) float64 {
	var m float64
	for i := range a {
		for j := range a[i] {
			if d := a[i][j] - b[i][j]; d > m {
				m = d
			} else if -d > m {
				m = -d
			}
		}
	}
	return m
}

// trainSteps trains n steps of the fixed mini-batch.
func trainSteps(t testing.TB, tr *rookery.Trainer, m *mlp, n int) {
	t.Helper()
	for range n {
		if _, err := tr.Step(context.Background(), m.feeds()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCheckpointResume(t *testing.T) {
	const n, s = 10, 4
	opts := []rookery.Option{rookery.WithParts(2), rookery.WithMicroBatches(2), rookery.WithSolver(exec.Adam(0.02))}
	m := newMLP(8, 6, 10, 3)
	ctx := context.Background()
	tr, err := rookery.NewTrainer(ctx, m.g, m.loss, m.learn, inputsOf(m), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	trainSteps(t, tr, m, s)
	var ck bytes.Buffer
	if err := tr.Checkpoint(context.Background(), &ck); err != nil {
		t.Fatal(err)
	}
	trainSteps(t, tr, m, n-s)
	want := params(t, tr, m)

	for _, parts := range []int{2, 3} {
		t.Run(fmt.Sprint(parts, "parts"), func(t *testing.T) {
			m2 := newMLP(8, 6, 10, 3)
			o := append(append([]rookery.Option{}, opts...), rookery.WithParts(parts),
				rookery.WithPartitionOptions(partition.WithMaxImbalance(2)), rookery.WithCheckpoint(bytes.NewReader(ck.Bytes())))
			tr2, err := rookery.NewTrainer(ctx, m2.g, m2.loss, m2.learn, inputsOf(m2), o...)
			if err != nil {
				t.Fatal(err)
			}
			defer tr2.Close()
			if tr2.Steps() != s {
				t.Errorf("resumed at step %d, want %d", tr2.Steps(), s)
			}
			trainSteps(t, tr2, m2, n-s)
			d := maxAbsDiff(params(t, tr2, m2), want)
			t.Logf("%d parts: max |difference| from the uninterrupted run %g", parts, d)
			if d > 1e-9 || (parts == 2 && d != 0) {
				t.Errorf("resumed run differs by %g", d)
			}
		})
	}
}

func TestCheckpointErrors(t *testing.T) {
	m := newMLP(8, 6, 10, 3)
	ctx := context.Background()
	tr, err := rookery.NewTrainer(ctx, m.g, m.loss, m.learn, inputsOf(m))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	var ck bytes.Buffer
	if err := tr.Checkpoint(context.Background(), &ck); err != nil {
		t.Fatal(err)
	}
	other := newMLP(8, 6, 12, 3) // another hidden width
	cases := map[string]struct {
		m *mlp
		b []byte
	}{
		"not a checkpoint": {m, []byte("model bytes, not a checkpoint")},
		"truncated":        {m, ck.Bytes()[:ck.Len()-5]},
		"another graph":    {other, ck.Bytes()},
		"empty":            {m, nil},
	}
	for name, c := range cases {
		_, err := rookery.NewTrainer(ctx, c.m.g, c.m.loss, c.m.learn, inputsOf(c.m), rookery.WithCheckpoint(bytes.NewReader(c.b)))
		var ce *rookery.CheckpointError
		if !errors.Is(err, rookery.ErrCheckpoint) || (name != "truncated" && !errors.As(err, &ce)) {
			t.Errorf("%s: %v, want rookery.ErrCheckpoint", name, err)
		}
	}
}

// The requester-crash test runs the requester as a child process (this
// test binary, running TestHelperRequester) that writes a checkpoint file
// after every step, kills it with SIGKILL after step killAt, starts it
// again (it resumes from the file) and compares its final model with an
// uninterrupted run in this process.
const helperEnv = "ROOKERY_HELPER_REQUESTER"

const crashSteps = 12

func crashOpts() []rookery.Option {
	return []rookery.Option{rookery.WithParts(2), rookery.WithSolver(exec.Adam(0.02))}
}

func TestHelperRequester(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("runs as a child process of TestRequesterKilledResumes")
	}
	ckPath := filepath.Join(dir, "run.ckpt")
	m := newMLP(8, 6, 10, 3)
	opts := crashOpts()
	if f, err := os.Open(ckPath); err == nil {
		defer f.Close()
		opts = append(opts, rookery.WithCheckpoint(f))
	}
	ctx := context.Background()
	tr, err := rookery.NewTrainer(ctx, m.g, m.loss, m.learn, inputsOf(m), opts...)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("start %d\n", tr.Steps())
	in := bufio.NewReader(os.Stdin)
	for tr.Steps() < crashSteps {
		trainSteps(t, tr, m, 1)
		var b bytes.Buffer
		if err := tr.Checkpoint(context.Background(), &b); err != nil {
			t.Fatal(err)
		}
		// Write then rename, so that a kill never leaves half a file.
		if err := os.WriteFile(ckPath+".tmp", b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(ckPath+".tmp", ckPath); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("checkpoint %d\n", tr.Steps())
		// Wait for the parent, which kills this process here at the
		// step it chose, before the next checkpoint can be written.
		if _, err := in.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	var b bytes.Buffer
	if err := tr.Save(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "final.model"), b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	fmt.Println("done")
}

// runHelper starts the requester process; it is killed with SIGKILL once
// it reports checkpoint killAt (never, if killAt < 0). It returns the
// step it started from.
func runHelper(t *testing.T, dir string, killAt int) int {
	t.Helper()
	cmd := osexec.Command(os.Args[0], "-test.run=^TestHelperRequester$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	start, killed := -1, false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "start "); ok {
			start, _ = strconv.Atoi(v)
		}
		if v, ok := strings.CutPrefix(line, "checkpoint "); ok && !killed {
			if k, _ := strconv.Atoi(v); k == killAt {
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed = true
				continue
			}
			if _, err := io.WriteString(in, "next\n"); err != nil {
				t.Fatal(err)
			}
		}
	}
	err = cmd.Wait()
	if killAt >= 0 && !killed {
		t.Fatalf("the requester never reached step %d: %v\n%s", killAt, err, stderr.String())
	}
	if killAt < 0 && err != nil {
		t.Fatalf("requester: %v\n%s", err, stderr.String())
	}
	return start
}

func TestRequesterKilledResumes(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		t.Skip("child process")
	}
	dir := t.TempDir()
	const killAt = 5
	if s := runHelper(t, dir, killAt); s != 0 {
		t.Fatalf("first run started at step %d", s)
	}
	if _, err := os.Stat(filepath.Join(dir, "final.model")); err == nil {
		t.Fatal("the killed requester finished")
	}
	if s := runHelper(t, dir, -1); s != killAt {
		t.Fatalf("second run started at step %d, want %d", s, killAt)
	}
	f, err := os.Open(filepath.Join(dir, "final.model"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	model, err := rookery.Load(f)
	if err != nil {
		t.Fatal(err)
	}

	m := newMLP(8, 6, 10, 3)
	ctx := context.Background()
	tr, err := rookery.NewTrainer(ctx, m.g, m.loss, m.learn, inputsOf(m), crashOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	trainSteps(t, tr, m, crashSteps)
	want := params(t, tr, m)
	got := make([][]float64, len(m.learn))
	for i, n := range m.learn {
		node, ok := model.Graph().Node(int64(n.ID()))
		if !ok || node.Value == nil {
			t.Fatalf("model lacks parameter %s", n.Name())
		}
		got[i] = node.Value.Float64s()
	}
	d := maxAbsDiff(got, want)
	t.Logf("killed at step %d of %d, resumed in a new process: max |difference| %g", killAt, crashSteps, d)
	if d > 1e-9 {
		t.Errorf("resumed model differs from the uninterrupted run by %g", d)
	}
}

// inputsOf returns the inputs fed on every step.
func inputsOf(m *mlp) gorgonia.Nodes { return gorgonia.Nodes{m.x, m.y} }
