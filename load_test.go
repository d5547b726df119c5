package rookery_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/guard"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// TestLoad32Providers: 32 providers and a seed node on loopback (in this
// process), 4 requesters training at once, each on 2 providers with 6
// spares found through the seed node; two providers are stopped abruptly
// mid-run. Every job must end with the model of its fault-free run, no
// provider may account for more memory than its limit, and nothing may
// be left running afterwards.
func TestLoad32Providers(t *testing.T) {
	const (
		nProviders = 32
		nJobs      = 4
		steps      = 30
		memLimit   = 4 << 20
	)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx := context.Background()

	seedLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seed := seednode.NewRegistry(seednode.WithTTL(5 * time.Second))
	seedDone := make(chan error, 1)
	go func() { seedDone <- seed.Serve(seedLis) }()
	seedAddr := seedLis.Addr().String()

	actx, stopAnnounce := context.WithCancel(ctx)
	servers := make(map[string]*transport.Server)
	var all []*transport.Server
	var announcing sync.WaitGroup
	for range nProviders {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := transport.NewServer(exec.NewCPU(), transport.WithBenchmark(0), transport.WithLimits(transport.Limits{MaxProviderBytes: memLimit}))
		go srv.Serve(lis)
		servers[lis.Addr().String()] = srv
		all = append(all, srv)
		announcing.Add(1)
		go func() {
			defer announcing.Done()
			srv.Announce(actx, seedAddr, lis.Addr().String())
		}()
	}
	defer func() {
		stopAnnounce()
		announcing.Wait()
		for _, s := range all {
			s.Stop()
		}
		seed.Stop()
		<-seedDone
	}()
	var entries []string
	for try := 0; ; try++ {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		found, err := seednode.Find(fctx, seedAddr, seednode.Need{N: nProviders})
		cancel()
		if err == nil {
			for _, e := range found {
				entries = append(entries, e.Address)
			}
			break
		}
		if try == 100 {
			t.Fatalf("the seed node never listed %d providers: %v", nProviders, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Sample every provider's accounted memory while the jobs run.
	var peak atomic.Int64
	sampling := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, s := range all {
				if r := s.Reserved(); r > peak.Load() {
					peak.Store(r)
				}
			}
			select {
			case <-sampling:
				return
			case <-tick.C:
			}
		}
	}()

	type outcome struct {
		got     [][]float64
		events  []guard.Event
		elapsed time.Duration
		err     error
	}
	out := make([]outcome, nJobs)
	// Job 0 loses the provider of its part 1 after step 7, job 1 that of
	// its part 0 after step 16.
	kills := map[int][2]int{0: {7, 1}, 1: {16, 0}}
	var jobs sync.WaitGroup
	for j := range nJobs {
		jobs.Add(1)
		go func(j int) {
			defer jobs.Done()
			o := &out[j]
			start := time.Now()
			var clients []*transport.Client
			defer func() {
				for _, c := range clients {
					c.Close()
				}
			}()
			var execs []exec.Executor
			for _, addr := range entries[8*j : 8*j+8] {
				c, err := transport.Connect(ctx, addr)
				if err != nil {
					o.err = err
					return
				}
				clients = append(clients, c)
				execs = append(execs, c)
			}
			var mu sync.Mutex
			m := newMLP(16, 16+j, 32+j, 4)
			opts := append(guardOpts(), rookery.WithExecutors(execs[:2]...), rookery.WithSpares(execs[2:]...),
				rookery.WithSnapshotEvery(3), rookery.WithCallTimeout(30*time.Second),
				rookery.WithEvents(func(e guard.Event) { mu.Lock(); o.events = append(o.events, e); mu.Unlock() }))
			tr, err := rookery.NewTrainer(ctx, m.g, m.loss, m.learn, inputsOf(m), opts...)
			if err != nil {
				o.err = err
				return
			}
			defer tr.Close()
			for s := range steps {
				if _, err := tr.Step(ctx, m.feeds()); err != nil {
					o.err = fmt.Errorf("step %d: %w", s, err)
					return
				}
				if k, ok := kills[j]; ok && k[0] == s {
					servers[entries[8*j+k[1]]].Stop()
				}
			}
			o.got = params(t, tr, m)
			o.elapsed = time.Since(start)
		}(j)
	}
	jobs.Wait()
	close(sampling)
	sampler.Wait()

	replaced := 0
	for j, o := range out {
		if o.err != nil {
			t.Errorf("job %d: %v", j, o.err)
			continue
		}
		want := reference(t, 16, 16+j, 32+j, 4, steps)
		d := maxAbsDiff(o.got, want)
		var reps []string
		for _, e := range o.events {
			if e.Kind == guard.EventReplaced {
				reps = append(reps, e.String())
				replaced++
			}
		}
		t.Logf("job %d: %d steps in %v, %v, max |difference| from the fault-free run %g", j, steps, o.elapsed.Round(time.Millisecond), reps, d)
		if d > 1e-9 {
			t.Errorf("job %d: parameters differ from the fault-free run by %g", j, d)
		}
		if _, killed := kills[j]; killed != (len(reps) == 1) || len(reps) > 1 {
			t.Errorf("job %d: replacements %v", j, reps)
		}
	}
	t.Logf("%d providers, %d jobs, 2 providers stopped, %d parts replaced; peak memory accounted by one provider %d bytes (limit %d)",
		nProviders, nJobs, replaced, peak.Load(), memLimit)
	if p := peak.Load(); p > memLimit || p == 0 {
		t.Errorf("peak accounted memory %d, want in (0, %d]", p, memLimit)
	}
}
