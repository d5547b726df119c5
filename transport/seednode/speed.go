package seednode

import (
	"context"
	"fmt"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
	"github.com/rookery-ml/rookery/transport"
)

// The seed node's own speed measurement.
//
// A provider's registered speed is its own figure. Before listing it, the
// seed node opens a session on the provider through the ordinary
// executor API, as any requester would (with a lease it signs for
// itself when it signs leases), runs a small fixed benchmark there and
// ranks the provider by what it measured.

// BenchSize is the order of the square float32 matrices whose product
// the speed benchmark computes: 2·BenchSize³ floating-point operations
// a run.
const BenchSize = 256

// BenchRuns is how many timed runs the benchmark makes, after one
// untimed run that warms the provider up; in all some 100 MFLOP, well
// under a second on a slow machine.
const BenchRuns = 2

// BenchFLOP is the work of the timed runs.
const BenchFLOP = 2 * BenchSize * BenchSize * BenchSize * BenchRuns

// SpeedClaimSlack is how far a registered speed may exceed the seed
// node's measurement before the entry is marked (unverified_speed). A
// measurement through the network on a loaded machine is lower than the
// provider's own, so only a claim of more than twice it counts as far.
const SpeedClaimSlack = 2.0

// A SpeedProbe measures the speed of the provider at address in
// GFLOP/s, presenting lease on every call when it is not empty.
type SpeedProbe func(ctx context.Context, address, lease string) (gflops float64, err error)

// WithSpeedProbe sets how the registry measures a registering
// provider's speed. The default is DialSpeedProbe(DefaultProbeTimeout,
// nil) when the registry uses its default Prober; a registry given
// WithProber measures only when given WithSpeedProbe too (the dial
// options that reach providers, such as TLS credentials or a token, are
// the same for both). nil turns measuring off: entries are then ranked
// by the speed they registered.
func WithSpeedProbe(p SpeedProbe) Option {
	return func(c *config) { c.speedProbe, c.speedProbeSet = p, true }
}

// DefaultProbeRequester is the requester the leases that the seed node
// signs for its own speed probes name.
const DefaultProbeRequester = "anon:seed-speed-probe"

// WithProbeRequester sets the requester that the leases the seed node
// signs for its speed probes name (default DefaultProbeRequester, which
// providers accept from an anonymous caller). A seed node whose probes
// authenticate to providers (a transport.WithToken among the probe's
// dial options) names that identity, "token:NAME", as providers do.
func WithProbeRequester(id string) Option { return func(c *config) { c.probeRequester = id } }

// SpeedRetry is how long the registry waits before it measures again an
// entry whose measurement failed, at the entry's next heartbeat.
const SpeedRetry = time.Minute

// DialSpeedProbe connects to the provider with opts (and the lease) and
// runs MeasureGFLOPS there, all within timeout. clock times the
// benchmark (nil: the system clock).
func DialSpeedProbe(timeout time.Duration, clock transport.Clock, opts ...transport.DialOption) SpeedProbe {
	return func(ctx context.Context, address, lease string) (float64, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if lease != "" {
			opts = append(opts[:len(opts):len(opts)], transport.WithLease(lease))
		}
		c, err := transport.Connect(ctx, address, append(opts[:len(opts):len(opts)], transport.WithDialTimeout(timeout))...)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return MeasureGFLOPS(ctx, c, clock)
	}
}

// MeasureGFLOPS opens a session on e, computes the product of two
// BenchSize×BenchSize float32 matrices resident there once untimed and
// BenchRuns times timed by clock (nil: the system clock), closes the
// session and returns BenchFLOP over the time taken, in GFLOP/s.
func MeasureGFLOPS(ctx context.Context, e exec.Executor, clock transport.Clock) (float64, error) {
	if clock == nil {
		clock = transport.SystemClock
	}
	const n = BenchSize
	g := graph.New()
	g.MustAdd(graph.Node{ID: 1, Name: "a", Role: graph.RoleInput, Op: graph.NewOp(graph.KindInput), DType: graph.Float32, Shape: graph.Shape{n, n}})
	g.MustAdd(graph.Node{ID: 2, Name: "b", Role: graph.RoleInput, Op: graph.NewOp(graph.KindInput), DType: graph.Float32, Shape: graph.Shape{n, n}})
	g.MustAdd(graph.Node{ID: 3, Name: "ab", Role: graph.RoleOp, Op: graph.NewOp(graph.KindMatMul), Inputs: []int64{1, 2}, DType: graph.Float32, Shape: graph.Shape{n, n}})
	g.MustAdd(graph.Node{ID: 4, Name: "sum", Role: graph.RoleOp, Op: graph.NewOp(graph.KindSum, graph.AxesAttr("axes", 0, 1)), Inputs: []int64{3}, DType: graph.Float32})
	s, err := e.Open(ctx, exec.SessionSpec{Graph: g, DataInputs: []int64{1, 2}, Outputs: []int64{4}, EvalMode: true, MicroBatches: 1,
		Solver: exec.SGD(0.1, 0)})
	if err != nil {
		return 0, fmt.Errorf("seednode: speed benchmark: %w", err)
	}
	defer s.Close()
	for id := int64(1); id <= 2; id++ {
		m := tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(n, n))
		for i, v := range m.Float32s() {
			m.Float32s()[i] = v + float32((i+int(id))%7)*0.125
		}
		if err := s.Put(ctx, exec.InputName(id), m); err != nil {
			return 0, fmt.Errorf("seednode: speed benchmark: %w", err)
		}
	}
	var start time.Time
	for run := range BenchRuns + 1 {
		if run == 1 {
			start = clock.Now()
		}
		if _, err := s.Forward(ctx, 0, nil); err != nil {
			return 0, fmt.Errorf("seednode: speed benchmark: %w", err)
		}
	}
	took := clock.Now().Sub(start)
	if took <= 0 {
		return 0, fmt.Errorf("seednode: speed benchmark: took %v", took)
	}
	return BenchFLOP / took.Seconds() / 1e9, nil
}
