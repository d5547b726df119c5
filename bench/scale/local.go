package main

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
	"github.com/rookery-ml/rookery/internal/shaper"
)

// env is what a run in local mode needs of the one that started the
// providers.
type env struct {
	bin, tmp string
	limiter  *limiter
	ps       *[]*provider // the providers to stop at the end; a fresh one is added
	load     float64
	data     *dataset
}

// localResult holds the JSON figures of -mode local.
type localResult struct {
	Rounds        int     `json:"rounds"`
	H             int     `json:"h"`
	Codec         string  `json:"codec"`
	OuterLR       float64 `json:"outer_lr"`
	OuterMomentum float64 `json:"outer_momentum"`
	Deadline      float64 `json:"deadline"`
	RoundMS       float64 `json:"round_ms"`
	// StagingS is the time NewRounds took to open the sessions and put
	// every provider's shard of the data, before the clock starts;
	// StagingBytesPerProvider the bytes it moved per provider.
	StagingS                         float64 `json:"staging_s"`
	StagingBytesPerProvider          float64 `json:"staging_bytes_per_provider"`
	ExchangeBytesPerRoundPerProvider float64 `json:"exchange_bytes_per_round_per_provider"`
	Samples                          int64   `json:"samples"`
	// SecondsRatio is seconds_to_target over baseline_seconds_to_target.
	SecondsRatio *float64 `json:"seconds_ratio,omitempty"`
	Late         int      `json:"late"`
	Events       []string `json:"events"`

	// With -kill-at: the run with churn.
	KillAtS              *float64 `json:"kill_at_s,omitempty"`
	JoinAtS              *float64 `json:"join_at_s,omitempty"`
	ChurnSecondsToTarget *float64 `json:"churn_seconds_to_target,omitempty"`
	ChurnRatio           *float64 `json:"churn_ratio,omitempty"`
	ChurnReached         *bool    `json:"churn_reached,omitempty"`
	ChurnTestAccuracy    *float64 `json:"churn_test_accuracy,omitempty"`
	ChurnRounds          int      `json:"churn_rounds,omitempty"`
	ChurnStagingS        *float64 `json:"churn_staging_s,omitempty"`
	ChurnEvents          []string `json:"churn_events,omitempty"`
}

// localMeasure is what one run of local rounds measured.
type localMeasure struct {
	measure
	rounds           int
	roundMS          float64
	stagingS         float64
	stagingBytes     float64 // per provider
	exchangePerRound float64 // per provider that ran the round
	samples          int64
	late             int
	events           []string
}

// churn is the plan of a disturbed run: kill victim at killAt on the
// training clock, start a fresh provider at joinAt (0: none), which
// replaces the replica that left.
type churn struct {
	victim         *provider
	killAt, joinAt time.Duration
	start          func(ctx context.Context) (*provider, error)

	started atomic.Bool
	ready   chan struct{} // closed once start returned
	fresh   *provider
	err     error
}

// wait waits for the fresh provider, if it was started, and returns it
// (to be stopped; nil if none).
func (c *churn) wait() *provider {
	if !c.started.Load() {
		return nil
	}
	<-c.ready
	return c.fresh
}

// clockAction runs fn once the training clock reaches at. The clock runs
// only during rounds, so the action is armed at every round's start and
// disarmed at its end.
type clockAction struct {
	at    time.Duration
	fn    func()
	once  sync.Once
	timer *time.Timer
}

func (a *clockAction) arm(elapsed time.Duration) {
	if a == nil {
		return
	}
	if a.at <= elapsed {
		a.once.Do(a.fn)
		return
	}
	a.timer = time.AfterFunc(a.at-elapsed, func() { a.once.Do(a.fn) })
}

func (a *clockAction) disarm() {
	if a != nil && a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
}

// runLocal measures the baseline (sync, one provider, unshaped), then
// local rounds on every provider, then with -kill-at the same with churn.
func runLocal(ctx context.Context, o options, e *env) error {
	ps := *e.ps
	base, err := train(ctx, o, ps[:1], nil, 1, 1, nil, e.data, "")
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	fmt.Printf("baseline: 1 provider of %.2f core, sync, unshaped: %s\n", o.cpu[0], describe(o, base))
	loc, err := trainLocal(ctx, o, ps, o.link, e.data, nil, o.profile)
	if err != nil {
		return fmt.Errorf("local rounds on %d providers: %w", len(ps), err)
	}
	linkName := "-"
	if o.link != nil {
		linkName = o.link.String()
	}
	fmt.Printf("local: %d providers, link %s, h %d, %v: staging %.1f s (%.1f MB per provider); %s\n", len(ps), linkName, o.localSteps,
		o.codec, loc.stagingS, loc.stagingBytes/1e6, describe(o, &loc.measure))
	res := result{Providers: o.providers, CPU: o.cpu, CPULimit: e.limiter.kind, Mode: o.mode, Model: o.model,
		Layout: fmt.Sprintf("1x%d", len(ps)), LayoutChoice: "hand", SpeedScale: 1, Batch: o.batch, Load1: e.load,
		Steps: loc.steps, SamplesPerS: loc.samplesPerS, BaselineSamplesPerS: base.samplesPerS,
		StepMS: loc.stepMS, BytesPerStepPerProvider: loc.bytesPerStep, RequesterCPUMSPerStep: loc.cpuMS,
		ThrottledMSPerStep: loc.throttledMS, ProviderCPUMSPerStep: loc.providerCPUMS, SecondsToTarget: loc.toTarget, BaselineSecondsToTarget: base.toTarget,
		TestAccuracy: loc.acc, BaselineTestAccuracy: base.acc, Reached: loc.reached(o), BaselineReached: base.reached(o),
		MaxSeconds: o.maxSeconds, BytesPerSamplePerProvider: loc.bytesPerSample, Link: map[bool]string{true: linkName}[o.link != nil]}
	for range ps {
		res.Rows = append(res.Rows, o.batch)
	}
	res.Speedup = loc.samplesPerS / base.samplesPerS
	var total float64
	for _, c := range o.cpu {
		total += c
	}
	res.Efficiency = res.Speedup / (total / o.cpu[0])
	lr := &localResult{Rounds: loc.rounds, H: o.localSteps, Codec: o.codec.String(), OuterLR: o.outerLR, OuterMomentum: o.outerMomentum,
		Deadline: o.deadline, RoundMS: loc.roundMS, StagingS: loc.stagingS, StagingBytesPerProvider: loc.stagingBytes,
		ExchangeBytesPerRoundPerProvider: loc.exchangePerRound, Samples: loc.samples, Late: loc.late, Events: loc.events}
	if lr.Events == nil {
		lr.Events = []string{}
	}
	res.localResult = lr
	if loc.toTarget != nil && base.toTarget != nil {
		r := *loc.toTarget / *base.toTarget
		lr.SecondsRatio = &r
		fmt.Printf("%.1f s to %.4f against %.1f s for the baseline: %.3f×\n", *loc.toTarget, o.targetAcc, *base.toTarget, r)
	}
	if o.killAt > 0 {
		undisturbed := loc.seconds
		if loc.toTarget != nil {
			undisturbed = *loc.toTarget
		}
		secs := func(f float64) time.Duration { return time.Duration(f * undisturbed * float64(time.Second)) }
		victim := ps[1%len(ps)]
		ch := &churn{victim: victim, killAt: secs(o.killAt), ready: make(chan struct{}),
			start: func(ctx context.Context) (*provider, error) {
				return startProvider(ctx, e.bin, e.tmp, len(ps), victim.share, e.limiter)
			}}
		k := ch.killAt.Seconds()
		lr.KillAtS = &k
		if o.joinAt > 0 {
			ch.joinAt = secs(o.joinAt)
			j := ch.joinAt.Seconds()
			lr.JoinAtS = &j
		}
		cm, err := trainLocal(ctx, o, ps, o.link, e.data, ch, "")
		if p := ch.wait(); p != nil {
			*e.ps = append(*e.ps, p)
		}
		if err != nil {
			return fmt.Errorf("local rounds with churn: %w", err)
		}
		fmt.Printf("churn: provider 1 killed at %.1f s, a fresh one started at %.1f s: %s\n", ch.killAt.Seconds(), ch.joinAt.Seconds(), describe(o, &cm.measure))
		lr.ChurnSecondsToTarget, lr.ChurnReached, lr.ChurnTestAccuracy = cm.toTarget, cm.reached(o), cm.acc
		lr.ChurnRounds, lr.ChurnEvents = cm.rounds, cm.events
		lr.ChurnStagingS = &cm.stagingS
		if cm.toTarget != nil && loc.toTarget != nil {
			r := *cm.toTarget / *loc.toTarget
			lr.ChurnRatio = &r
			fmt.Printf("churn: %.1f s to %.4f against %.1f s undisturbed: %.3f×\n", *cm.toTarget, o.targetAcc, *loc.toTarget, r)
		}
		if lr.ChurnEvents == nil {
			lr.ChurnEvents = []string{}
		}
	}
	return printJSON(o, res)
}

// describe sums up a run in words.
func describe(o options, m *measure) string {
	s := fmt.Sprintf("%.0f samples/s, %.0f bytes per sample per provider, %.1f s of training", m.samplesPerS, m.bytesPerSample, m.seconds)
	switch {
	case m.toTarget != nil:
		s += fmt.Sprintf(", reached %.4f (test accuracy %.4f) in %.1f s", o.targetAcc, *m.acc, *m.toTarget)
	case m.acc != nil:
		s += fmt.Sprintf(", test accuracy %.4f", *m.acc)
		if o.targetAcc > 0 {
			s += fmt.Sprintf(": did not reach %.4f", o.targetAcc)
		}
	}
	return s
}

// roundsData returns the training set for the data inputs of m: MNIST's
// 60,000 images, or for the random-data models a set of 8 batches per
// provider.
func roundsData(o options, m *mlp, data *dataset, providers int) map[int64]*tensor.Dense {
	var xs []float32
	var labels []uint8
	if data != nil {
		xs, labels = data.train.Pixels, data.train.Labels
	} else {
		rng := rand.New(rand.NewSource(2))
		n := 8 * providers * o.batch
		xs, labels = make([]float32, n*784), make([]uint8, n)
		for i := range xs {
			xs[i] = float32(rng.NormFloat64())
		}
		for i := range labels {
			labels[i] = uint8(rng.Intn(10))
		}
	}
	n := len(labels)
	ys := make([]float32, n*10)
	for i, l := range labels {
		ys[i*10+int(l)] = 1
	}
	return map[int64]*tensor.Dense{
		m.x.ID(): tensor.New(tensor.WithShape(n, 784), tensor.WithBacking(xs)),
		m.y.ID(): tensor.New(tensor.WithShape(n, 10), tensor.WithBacking(ys)),
	}
}

// trainLocal trains the model by local-SGD rounds (exec.Rounds), one
// whole model per provider of ps (through l when not nil): it stages the
// data shards, then runs rounds until the target accuracy, -rounds or
// -max-seconds; with ch, it kills and starts providers on the way.
func trainLocal(ctx context.Context, o options, ps []*provider, l *shaper.Link, data *dataset, ch *churn, profile string) (*localMeasure, error) {
	hidden := o.hidden()
	m := newMLP(o.batch, hidden)
	ir, err := graph.FromGorgonia(m.g, graph.Learnables(m.learn...), graph.WithValues())
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var conns []*providerConn // guarded by mu: a replacement adds one
	var events []string
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.close()
		}
	}()
	execs := make([]exec.Executor, len(ps))
	for i, p := range ps {
		c, err := connect(ctx, p, l)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		execs[i] = c.ex
	}
	total := func() (t int64) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			t += c.bytes.Load()
		}
		return t
	}
	throttled := func() (t time.Duration) {
		for _, p := range ps {
			t += p.throttled()
		}
		return t
	}
	opts := []exec.RoundsOption{exec.WithRoundSteps(o.localSteps), exec.WithInnerSolver(exec.SGD(o.lr, 0.9)),
		exec.WithOuterSolver(exec.Nesterov(o.outerLR, o.outerMomentum)), exec.WithDeltaCodec(o.codec),
		exec.WithRoundDeadline(o.deadline),
		exec.WithRoundEvents(func(e exec.RoundEvent) {
			mu.Lock()
			events = append(events, e.String())
			mu.Unlock()
		})}
	var kill, join *clockAction
	if ch != nil {
		kill = &clockAction{at: ch.killAt, fn: func() {
			fmt.Printf("churn: killing provider 1 (pid %d)\n", ch.victim.cmd.Process.Pid)
			ch.victim.cmd.Process.Kill()
		}}
		if ch.joinAt > 0 {
			join = &clockAction{at: ch.joinAt, fn: func() {
				fmt.Println("churn: starting a fresh provider")
				ch.started.Store(true)
				go func() {
					defer close(ch.ready)
					ch.fresh, ch.err = ch.start(ctx)
				}()
			}}
			opts = append(opts, exec.WithReplacements(func(rctx context.Context) (exec.Executor, error) {
				for !ch.started.Load() {
					select {
					case <-rctx.Done():
						return nil, rctx.Err()
					case <-time.After(50 * time.Millisecond):
					}
				}
				select {
				case <-ch.ready:
				case <-rctx.Done():
					return nil, rctx.Err()
				}
				if ch.err != nil {
					return nil, ch.err
				}
				c, err := connect(rctx, ch.fresh, l)
				if err != nil {
					return nil, err
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				fmt.Printf("churn: the fresh provider %s is up; it joins once it holds its shard\n", ch.fresh.addr)
				return c.ex, nil
			}))
		}
	}

	// Staging: the sessions and the data shards, before the clock.
	b0, t0 := total(), time.Now()
	rs, err := exec.NewRounds(ctx, ir, m.loss.ID(), []int64{m.x.ID(), m.y.ID()}, roundsData(o, m, data, len(ps)), execs, opts...)
	if err != nil {
		return nil, fmt.Errorf("staging: %w", err)
	}
	defer rs.Close()
	res := &localMeasure{stagingS: time.Since(t0).Seconds(), stagingBytes: float64(total()-b0) / float64(len(ps))}
	fmt.Printf("staged %.1f MB per provider in %.1f s\n", res.stagingBytes/1e6, res.stagingS)

	stop, err := startProfile(profile)
	if err != nil {
		return nil, err
	}
	defer stop()
	b1, c0, th0 := total(), cpuTime(), throttled()
	// Each provider's CPU at the start, for the mean over the providers
	// at the end (a replacement started during the run counts from 0).
	pc0 := make(map[*provider]time.Duration, len(ps))
	for _, p := range ps {
		pc0[p] = p.cpu()
	}
	bound := time.Duration(o.maxSeconds * float64(time.Second))
	var elapsed time.Duration
	var exchange int64
	ran, shown := 0, 0
	for r := 0; r < o.rounds; r++ {
		kill.arm(elapsed)
		join.arm(elapsed)
		t := time.Now()
		st, err := rs.Round(ctx)
		elapsed += time.Since(t)
		kill.disarm()
		join.disarm()
		if err != nil {
			return nil, fmt.Errorf("round %d: %w", r+1, err)
		}
		res.rounds++
		res.steps += max(0, slicesMax(st.Steps))
		res.samples += st.Rows
		res.late += st.Late
		exchange += st.BytesUp + st.BytesDown
		for _, s := range st.Steps {
			if s > 0 {
				ran++
			}
		}
		over := bound > 0 && elapsed >= bound
		if o.targetAcc > 0 {
			params, err := rs.Params(ctx)
			if err != nil {
				return nil, err
			}
			ws := make([][]float32, len(m.learn))
			for i, n := range m.learn {
				ws[i] = params[n.ID()].Data().([]float32)
			}
			acc := classify(ws, data.test)
			res.acc = &acc
			if acc >= o.targetAcc {
				secs := elapsed.Seconds()
				res.toTarget = &secs
			}
		}
		mu.Lock()
		fresh := events[shown:]
		shown = len(events)
		mu.Unlock()
		for _, e := range fresh {
			fmt.Printf("  %.1f s: %s\n", elapsed.Seconds(), e)
		}
		if res.rounds%10 == 0 || res.toTarget != nil || over || len(fresh) > 0 {
			acc := ""
			if res.acc != nil {
				acc = fmt.Sprintf(", test accuracy %.4f", *res.acc)
			}
			fmt.Printf("round %d: %.1f s, loss %.4f, %d replicas, steps %v%s\n", st.Round, elapsed.Seconds(), st.Loss, st.Replicas, st.Steps, acc)
		}
		if res.toTarget != nil || over {
			break
		}
	}
	c1, th1 := cpuTime(), throttled()
	b2 := total()
	mu.Lock()
	res.events = append([]string(nil), events...)
	mu.Unlock()
	n := float64(res.rounds)
	res.seconds = elapsed.Seconds()
	res.roundMS = 1e3 * res.seconds / n
	res.stepMS = res.roundMS / float64(o.localSteps)
	res.samplesPerS = float64(res.samples) / res.seconds
	res.bytesPerSample = float64(b2-b1) / float64(res.samples)
	res.bytesPerStep = float64(b2-b1) / float64(len(ps)) / float64(max(1, res.steps))
	res.exchangePerRound = float64(exchange) / float64(max(1, ran))
	res.cpuMS = float64((c1 - c0).Microseconds()) / 1e3 / float64(max(1, res.steps)) // includes the evaluations
	res.throttledMS = float64((th1 - th0).Microseconds()) / 1e3 / float64(max(1, res.steps)) / float64(len(ps))
	var pcpu time.Duration
	for _, p := range ps {
		if d := p.cpu() - pc0[p]; d > 0 { // a provider killed during the run reads 0
			pcpu += d
		}
	}
	res.providerCPUMS = float64(pcpu.Microseconds()) / 1e3 / float64(max(1, res.steps)) / float64(len(ps))
	res.rows = []int{o.batch}
	return res, nil
}

func slicesMax(s []int) int {
	m := 0
	for _, v := range s {
		m = max(m, v)
	}
	return m
}
