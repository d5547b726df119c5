package partition

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/rookery-ml/rookery/graph"
)

// Defaults of ChooseLayout's cost model.
const (
	// DefaultSpeed is the FLOP/s assumed of an executor whose speed is
	// not given: about one CPU core running float32 matrix products.
	DefaultSpeed = 1e10
	// DefaultBandwidth (bytes/s) and DefaultLatency (one way) are assumed
	// of a link that is not given: a local network.
	DefaultBandwidth = 1.25e9 // 10 Gbit/s
	DefaultLatency   = 100 * time.Microsecond
	// DefaultRequesterBandwidth (bytes/s) is what the requester moves
	// per second, all its connections together: every gradient fetched
	// for the sum and every sum put back, every activation sent across a
	// cut, passes through it. Calibrated with bench/scale on loopback on
	// a 2-core machine, providers at 0.4 core (the 784-1024-1024-10 MLP,
	// 7.4 MB of gradients per replica; layouts 1×2, 1×3 and 1×4, two runs
	// each): 266 MB of gradients in and sums out took 471 ms beyond the
	// one-provider step over r, against 263 ms of measured reduce, as
	// fetching each replica's gradients on arrival moves part of the
	// exchange into the compute phase; see bench/scale/RESULTS.md,
	// 2026-12-06.
	DefaultRequesterBandwidth = 5.7e8
	// DefaultRingBytesPerFLOP is what a member of a gradient ring
	// (exec.ReduceRing, WithRing) moves per second, each way, per FLOP/s
	// of its speed as its start-up benchmark gives it: sending, receiving
	// and adding segments is work on the member's own CPU, so a member of
	// half the speed moves half the bytes. Calibrated with bench/scale on
	// loopback on a 2-core machine, with rings on the ring wire (the
	// 784-1024-1024-10 MLP, rings of 2, 4 and 8 providers at 0.8, 0.4 and
	// 0.2 core, summing and updating in place, the sharded update's share
	// taken out; two runs each): 1.3–1.6 GB/s, 500–530 MB/s and 230–245
	// MB/s for start-up benchmarks of 105, 51 and 22–23 GFLOPS, the
	// slowest member setting the pace; see bench/scale/RESULTS.md, "the
	// ring wire".
	DefaultRingBytesPerFLOP = 1.1e-2
	// DefaultUpdateFLOPsPerByte is the work of applying the update (SGD
	// with momentum, Adam: a few passes over each parameter and its
	// state) per byte of parameters, in FLOPs at the speed an executor's
	// start-up benchmark gives it. Calibrated with bench/scale on the
	// 784-1024-1024-10 MLP (7.4 MB of parameters): 6.6–7.6 ms at 0.8 core
	// (111 GFLOPS by the benchmark), 27–33 ms at 0.2 core (28 GFLOPS);
	// see bench/scale/RESULTS.md, 2026-12-06.
	DefaultUpdateFLOPsPerByte = 100
	// DefaultStepOverhead is the fixed cost of a step: the calls that
	// start and end it.
	DefaultStepOverhead = time.Millisecond
	// BackwardFactor is the work of a training pass (forward, backward of
	// the activations and of the parameters) over the forward FLOPs.
	BackwardFactor = 3
	// StateFactor is the memory an executor holds per byte of parameter:
	// the value, its gradient and up to two optimiser slots.
	StateFactor = 4
)

// LayoutOption configures ChooseLayout.
type LayoutOption func(*layoutConfig)

type layoutConfig struct {
	speeds    []float64
	memory    []int64
	bandwidth float64
	latency   time.Duration
	requester float64
	micro     int
	overhead  time.Duration
	split     []Option
	fixK      int
	fixR      int
	ring      float64 // bytes per FLOP of a ring member; 0: no ring
	ringOnly  bool    // replicas sum in the ring, cheaper or not
	update    float64 // FLOPs per parameter byte of the update
}

// WithSpeeds gives each executor's speed in FLOP/s (one per executor);
// without it all run at DefaultSpeed.
func WithSpeeds(flops ...float64) LayoutOption {
	s := append([]float64(nil), flops...)
	return func(c *layoutConfig) { c.speeds = s }
}

// WithGflops is WithSpeeds in GFLOP/s, as providers report their speed;
// with no speeds it does nothing.
func WithGflops(gflops ...float64) LayoutOption {
	return func(c *layoutConfig) {
		if len(gflops) > 0 {
			c.speeds = nil
			for _, g := range gflops {
				c.speeds = append(c.speeds, g*1e9)
			}
		}
	}
}

// WithMemory gives each executor's memory in bytes (one per executor, 0
// for unknown); a part whose parameters (StateFactor times their bytes)
// and activations do not fit makes the layout infeasible.
func WithMemory(bytes ...int64) LayoutOption {
	m := append([]int64(nil), bytes...)
	return func(c *layoutConfig) { c.memory = m }
}

// WithLink gives the bandwidth (bytes/s) and one-way latency of every
// executor's link to the requester; without it DefaultBandwidth and
// DefaultLatency.
func WithLink(bandwidth float64, latency time.Duration) LayoutOption {
	return func(c *layoutConfig) { c.bandwidth, c.latency = bandwidth, latency }
}

// WithRequester gives the requester's throughput (bytes/s, all its
// links together); without it DefaultRequesterBandwidth. The time to move
// bytes is the larger of the requester's time for all of them and each
// link's time for its own.
func WithRequester(bandwidth float64) LayoutOption {
	return func(c *layoutConfig) { c.requester = bandwidth }
}

// WithRing says the replicas can sum their gradients in a ring between
// their executors (exec.ReduceRing) instead of through the requester: a
// member moves 2·(r−1)/r of its part's parameter bytes each way, at the
// lesser of its link's bandwidth and bytesPerFLOP times its speed (see
// DefaultRingBytesPerFLOP), with 2·(r−1) hops of the link's latency, and
// none of it passes through the requester. Each candidate takes the
// cheaper of the ring and the requester (Candidate.Ring says which).
func WithRing(bytesPerFLOP float64) LayoutOption {
	return func(c *layoutConfig) { c.ring = bytesPerFLOP }
}

// WithRingOnly makes every candidate with replicas sum in the ring that
// WithRing prices (exec.ReduceRing), cheaper than the requester or not.
func WithRingOnly() LayoutOption { return func(c *layoutConfig) { c.ringOnly = true } }

// WithUpdateCost sets the work of the update per byte of parameters, in
// FLOPs at the executors' speeds (DefaultUpdateFLOPsPerByte for speeds
// from providers' start-up benchmarks; without it the update is left
// out): every replica applies it to its parts' parameters after the
// step's compute, and a ring that shards it (WithRing) gives each
// replica 1/r.
func WithUpdateCost(flopsPerByte float64) LayoutOption {
	return func(c *layoutConfig) { c.update = flopsPerByte }
}

// WithLayoutMicroBatches is the number of micro-batches every replica
// cuts its rows into (default 1).
func WithLayoutMicroBatches(m int) LayoutOption { return func(c *layoutConfig) { c.micro = m } }

// WithStepOverhead sets the fixed cost of a step (default
// DefaultStepOverhead).
func WithStepOverhead(d time.Duration) LayoutOption { return func(c *layoutConfig) { c.overhead = d } }

// WithSplitOptions passes options (imbalance, seed, method) to the Split
// of every candidate; capacities are ChooseLayout's own.
func WithSplitOptions(opts ...Option) LayoutOption {
	return func(c *layoutConfig) { c.split = append(c.split, opts...) }
}

// WithFixed restricts the candidates to k parts (when k > 0) and r
// replicas (when r > 0).
func WithFixed(k, r int) LayoutOption { return func(c *layoutConfig) { c.fixK, c.fixR = k, r } }

// Layout is the outcome of ChooseLayout: every candidate (k, r) it
// considered, and the pick.
type Layout struct {
	Batch      int         // rows of a mini-batch, from the graph's first input
	Executors  int         // executors available
	Candidates []Candidate // by k, then r
	Pick       int         // index of the chosen candidate in Candidates
}

// Chosen returns the chosen candidate.
func (l *Layout) Chosen() Candidate { return l.Candidates[l.Pick] }

// Candidate is one layout of k parts × r replicas and its predicted step
// time, or the reason it cannot run.
type Candidate struct {
	K, R int
	// Executors are the indexes of the k·r executors it uses, fastest
	// first: Executors[i*K+j] runs part j of replica i.
	Executors []int
	// PartCapacities are the capacities the parts were split for, and
	// RowWeights each replica's relative share of the rows.
	PartCapacities []float64
	RowWeights     []float64
	Plan           *Plan `json:"-"`
	// The predicted step, in seconds: Compute is the slowest replica's
	// slowest stage doing all its rows, Bubble the time its other stages
	// wait for it in the GPipe schedule (Compute·(k−1)/M), Transfer the
	// values sent across cuts (forward and backward, every micro-batch,
	// through the requester), Reduce the gradients fetched from every
	// replica and the sum put back (WithRing: the slowest ring member's
	// share of the ring), and Overhead the fixed cost. Step is
	// their sum and SamplesPerSecond the batch over Step.
	//
	// Bytes move through the requester: Reduce is the larger of the
	// requester's time for 2·r·P bytes (P the parameter bytes of all the
	// parts, which are reduced at once) and the slowest link's time for
	// its 2·P_j (P_j of its part), plus a round trip per tensor fetched
	// and per part. Transfer is a round trip and each link's time for
	// one micro-batch's values per slot of the schedule, plus the time
	// by which the requester's for the activations of every replica,
	// 4·(cut bytes) per step, exceeds Compute + Bubble (it forwards them
	// while the stages compute).
	Compute, Bubble, Transfer, Reduce, Overhead float64
	// Update is the slowest executor's update (WithUpdateCost), 1/r of
	// it in a ring that shards it.
	Update                 float64
	Step, SamplesPerSecond float64
	// Ring says the reduction is predicted cheaper in a ring between the
	// executors (WithRing) than through the requester, and Reduce is the
	// ring's.
	Ring bool
	// Err says why the layout cannot run; the figures are then zero.
	Err error `json:"-"`
}

// ErrLayout marks a request ChooseLayout cannot answer: no executors,
// options of the wrong length, or no candidate that can run.
var ErrLayout = errors.New("partition: no layout")

// ChooseLayout predicts the step time of training g, split into k parts
// with r data-parallel replicas of them, for every k·r ≤ n, and picks the
// fastest: the most samples per second, and among layouts within 1% of
// it the one with the fewest executors, then the fewest parts. Costs come
// from the graph (forward FLOPs times BackwardFactor, split across
// replicas in proportion to their rows), the executors' speeds and
// memory and the link. The k·r fastest executors are used, fastest first,
// in the grid order of exec.Grid. Candidates that cannot run (a k that
// Split finds infeasible, too few rows for r replicas of M micro-batches,
// a part that does not fit in memory) are listed with their reason.
// The result depends only on its arguments.
func ChooseLayout(g *graph.Graph, n int, opts ...LayoutOption) (*Layout, error) {
	c := layoutConfig{micro: 1, bandwidth: DefaultBandwidth, latency: DefaultLatency, requester: DefaultRequesterBandwidth, overhead: DefaultStepOverhead}
	for _, o := range opts {
		o(&c)
	}
	if n < 1 {
		return nil, fmt.Errorf("%w: %d executors", ErrLayout, n)
	}
	if c.speeds == nil {
		c.speeds = make([]float64, n)
		for i := range c.speeds {
			c.speeds[i] = DefaultSpeed
		}
	}
	if len(c.speeds) != n || (c.memory != nil && len(c.memory) != n) {
		return nil, fmt.Errorf("%w: %d speeds and %d memory sizes for %d executors", ErrLayout, len(c.speeds), len(c.memory), n)
	}
	for i, s := range c.speeds {
		if !(s > 0) || math.IsInf(s, 0) {
			return nil, fmt.Errorf("%w: executor %d's speed is %v", ErrLayout, i, s)
		}
	}
	if !(c.bandwidth > 0) || !(c.requester > 0) || c.latency < 0 || c.micro < 1 || c.overhead < 0 || !(c.ring >= 0) || math.IsInf(c.ring, 0) || !(c.update >= 0) || math.IsInf(c.update, 0) {
		return nil, fmt.Errorf("%w: bandwidth %v, requester %v, latency %v, %d micro-batches, overhead %v", ErrLayout, c.bandwidth, c.requester, c.latency, c.micro, c.overhead)
	}
	batch := 0
	if in := g.Inputs(); len(in) > 0 {
		if nd, _ := g.Node(in[0]); len(nd.Shape) > 0 {
			batch = nd.Shape[0]
		}
	}
	if batch < 1 {
		return nil, fmt.Errorf("%w: the graph has no input with a batch axis", ErrLayout)
	}
	// Executors, fastest first (the lower index first among equals).
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return c.speeds[order[a]] > c.speeds[order[b]] })

	lay := &Layout{Batch: batch, Executors: n, Pick: -1}
	for k := 1; k <= n; k++ {
		if c.fixK > 0 && k != c.fixK {
			continue
		}
		for r := 1; k*r <= n; r++ {
			if c.fixR > 0 && r != c.fixR {
				continue
			}
			cand := c.candidate(g, batch, k, r, order[:k*r])
			lay.Candidates = append(lay.Candidates, cand)
		}
	}
	best := -1
	for i, cand := range lay.Candidates {
		if cand.Err != nil {
			continue
		}
		if best < 0 || cand.SamplesPerSecond > lay.Candidates[best].SamplesPerSecond {
			best = i
		}
	}
	if best < 0 {
		var errs []error
		for _, cand := range lay.Candidates {
			errs = append(errs, cand.Err)
		}
		return lay, fmt.Errorf("%w: no candidate can run: %w", ErrLayout, errors.Join(errs...))
	}
	// Prefer fewer executors, then fewer parts, within 1% of the fastest.
	lay.Pick = best
	for i, cand := range lay.Candidates {
		p := lay.Candidates[lay.Pick]
		if cand.Err != nil || cand.SamplesPerSecond < 0.99*lay.Candidates[best].SamplesPerSecond {
			continue
		}
		if cand.K*cand.R < p.K*p.R || (cand.K*cand.R == p.K*p.R && cand.K < p.K) {
			lay.Pick = i
		}
	}
	return lay, nil
}

// candidate predicts the step of k parts × r replicas on the executors
// execs (fastest first).
func (c *layoutConfig) candidate(g *graph.Graph, batch, k, r int, execs []int) Candidate {
	cand := Candidate{K: k, R: r, Executors: append([]int(nil), execs...)}
	fail := func(err error) Candidate { cand.Err = err; return cand }
	if batch%c.micro != 0 || batch/c.micro < r {
		return fail(fmt.Errorf("%w: a batch of %d rows does not give %d replicas %d micro-batches each", ErrLayout, batch, r, c.micro))
	}
	speed := func(i, j int) float64 { return c.speeds[execs[i*k+j]] }
	// Part j's capacity is the mean speed of its executors; a replica
	// keeps pace with its slowest stage relative to that.
	caps := make([]float64, k)
	for i := range r {
		for j := range k {
			caps[j] += speed(i, j) / float64(r)
		}
	}
	weights := make([]float64, r)
	var wsum float64
	for i := range r {
		weights[i] = math.Inf(1)
		for j := range k {
			weights[i] = math.Min(weights[i], speed(i, j)/caps[j])
		}
		wsum += weights[i]
	}
	cand.PartCapacities, cand.RowWeights = caps, weights
	plan, err := Split(g, k, append(append([]Option{}, c.split...), WithCapacities(caps))...)
	if err != nil {
		return fail(err)
	}
	cand.Plan = plan
	// Per part: parameter bytes, tensors and activation bytes (full batch).
	acts := make([]float64, k)
	tensors := make([]int, k)
	for j, p := range plan.Parts {
		for _, id := range p.Nodes {
			nd, _ := g.Node(id)
			if nd.Role == graph.RoleLearnable {
				tensors[j]++
			} else if nd.Role != graph.RoleInput {
				acts[j] += float64(g.Cost(id).OutputBytes)
			}
		}
	}
	bw, lat, req := c.bandwidth, c.latency.Seconds(), c.requester
	m := float64(c.micro)
	// Every replica's activations, in and out of the requester, forward
	// and back: 4·(cut bytes) per step over the requester's throughput.
	reqTransfer := 4 * float64(plan.CutBytes()) / req
	var slowest float64
	for i := range r {
		share := weights[i] / wsum // of the rows
		var stage float64
		for j, p := range plan.Parts {
			if mem := c.memoryOf(execs[i*k+j]); mem > 0 {
				need := float64(StateFactor*p.ParamBytes) + share*acts[j]
				if need > float64(mem) {
					return fail(fmt.Errorf("%w: part %d of replica %d needs %.3g bytes, executor %d has %d", ErrLayout, j, i, need, execs[i*k+j], mem))
				}
			}
			stage = math.Max(stage, BackwardFactor*p.Cost*share/speed(i, j))
		}
		var transfer float64
		if k > 1 {
			// Each of the M+k−1 slots of the schedule, forward and back,
			// sends one boundary's micro-batch in and out of the requester:
			// a round trip each over the link; the requester carries every
			// replica's while the stages compute.
			slot := float64(plan.CutBytes()) / float64(k-1) * share / m
			slots := 2 * (m + float64(k) - 1)
			transfer = slots*2*(lat+slot/bw) + math.Max(0, reqTransfer-stage*(1+float64(k-1)/m))
		}
		bubble := stage * float64(k-1) / m
		if t := stage + bubble + transfer; t > slowest {
			slowest = t
			cand.Compute, cand.Bubble, cand.Transfer = stage, bubble, transfer
		}
	}
	// The update: every replica applies it to its parts' parameters
	// after the step's compute; the slowest executor sets the time.
	var update float64
	for i := range r {
		for j, p := range plan.Parts {
			update = math.Max(update, c.update*float64(p.ParamBytes)/speed(i, j))
		}
	}
	cand.Update = update
	if r > 1 {
		// Every part is reduced at once, each replica over its own link:
		// the gradients come in, the sum goes out, one call per tensor.
		// All of it passes through the requester: 2·r·P bytes.
		var total, link, calls float64
		for j, p := range plan.Parts {
			total += 2 * float64(r) * float64(p.ParamBytes)
			link = math.Max(link, 2*float64(p.ParamBytes)/bw)
			calls = math.Max(calls, 2*lat*float64(1+tensors[j]))
		}
		cand.Reduce = math.Max(link, total/req) + calls
		if c.ring > 0 {
			// Every part's ring runs at once, each member at its own
			// pace: the slowest member sets the time. A ring shards the
			// update too. The cheaper of the two is taken (exec.ReduceAuto
			// on providers takes the ring; the trainer follows the pick).
			var ring float64
			for i := range r {
				for j, p := range plan.Parts {
					rate := math.Min(bw, c.ring*speed(i, j))
					ring = math.Max(ring, 2*float64(r-1)/float64(r)*float64(p.ParamBytes)/rate+2*float64(r-1)*lat)
				}
			}
			if c.ringOnly || ring+update/float64(r) < cand.Reduce+update {
				cand.Reduce, cand.Update, cand.Ring = ring, update/float64(r), true
			}
		}
	}
	cand.Overhead = c.overhead.Seconds()
	cand.Step = cand.Compute + cand.Bubble + cand.Transfer + cand.Reduce + cand.Update + cand.Overhead
	cand.SamplesPerSecond = float64(batch) / cand.Step
	return cand
}

func (c *layoutConfig) memoryOf(i int) int64 {
	if c.memory == nil {
		return 0
	}
	return c.memory[i]
}
