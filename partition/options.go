package partition

import (
	"fmt"
	"math"
)

// DefaultMaxImbalance is the imbalance bound used unless WithMaxImbalance
// says otherwise: no part more than 3% above its share of the work.
const DefaultMaxImbalance = 0.03

// Option configures Split.
type Option func(*config)

type config struct {
	caps   []float64
	eps    float64
	seed   int64
	method Method
}

// WithCapacities gives the relative speed of each of the k providers: part
// i gets work in proportion to capacities[i]. There must be k of them, all
// positive and finite. Without it all parts get equal shares.
func WithCapacities(capacities []float64) Option {
	c := append([]float64(nil), capacities...)
	return func(cfg *config) { cfg.caps = c }
}

// WithMaxImbalance bounds how far a part's work may exceed its share:
// cost_i ≤ (1+eps) × share_i × total. The default is DefaultMaxImbalance.
func WithMaxImbalance(eps float64) Option { return func(cfg *config) { cfg.eps = eps } }

// WithSeed seeds the random choices of the multilevel partitioner (the
// order in which it visits nodes while coarsening). The same graph, k,
// options and seed give the same plan.
func WithSeed(seed int64) Option { return func(cfg *config) { cfg.seed = seed } }

// WithMethod forces one algorithm instead of the best of all; for
// comparisons and tests.
func WithMethod(m Method) Option { return func(cfg *config) { cfg.method = m } }

// Method names an algorithm that produced a plan.
type Method uint8

// Methods.
const (
	// MethodAuto runs every method that applies and keeps the best plan.
	MethodAuto Method = iota
	// MethodChain is the exact dynamic program for graphs whose work forms
	// a chain (one topological order only). Forced on another graph, it is
	// the same program on the graph's order, without refinement.
	MethodChain
	// MethodOrder splits the graph's own node order into contiguous
	// segments with the same dynamic program, then refines the boundaries
	// in a V-cycle: it coarsens within parts and moves nodes between
	// adjacent parts from the coarsest level down.
	MethodOrder
	// MethodMultilevel coarsens the graph acyclically, splits the coarsest
	// graph, and refines while uncoarsening.
	MethodMultilevel
	// MethodBaseline cuts the graph's node order into contiguous chunks by
	// cumulative cost, ignoring traffic, as Raven's scheduler did by op id.
	MethodBaseline
)

var methodNames = [...]string{"auto", "chain", "order", "multilevel", "baseline"}

func (m Method) String() string {
	if int(m) < len(methodNames) {
		return methodNames[m]
	}
	return fmt.Sprintf("method(%d)", uint8(m))
}

func newConfig(k int, opts []Option) (*config, error) {
	cfg := &config{eps: DefaultMaxImbalance}
	for _, o := range opts {
		o(cfg)
	}
	if k < 1 {
		return nil, &InfeasibleError{K: k, Reason: ReasonBadK}
	}
	if cfg.caps == nil {
		cfg.caps = make([]float64, k)
		for i := range cfg.caps {
			cfg.caps[i] = 1
		}
	}
	if len(cfg.caps) != k {
		return nil, &CapacityError{K: k, Capacities: cfg.caps, Index: -1}
	}
	for i, c := range cfg.caps {
		if !(c > 0) || math.IsInf(c, 0) {
			return nil, &CapacityError{K: k, Capacities: cfg.caps, Index: i}
		}
	}
	if !(cfg.eps >= 0) || math.IsInf(cfg.eps, 0) {
		return nil, &OptionError{Option: "max imbalance", Value: cfg.eps, Reason: "must be a finite number at least 0"}
	}
	if cfg.method > MethodBaseline {
		return nil, &OptionError{Option: "method", Value: float64(cfg.method), Reason: "unknown method"}
	}
	return cfg, nil
}

// shares returns each part's fraction of the work: capacity over the sum.
func shares(caps []float64) []float64 {
	var sum float64
	for _, c := range caps {
		sum += c
	}
	out := make([]float64, len(caps))
	for i, c := range caps {
		out[i] = c / sum
	}
	return out
}

// limits returns the most work each part may hold under the bound eps.
func limits(total int64, shares []float64, eps float64) []float64 {
	out := make([]float64, len(shares))
	for i, s := range shares {
		out[i] = (1 + eps) * s * float64(total)
	}
	return out
}
