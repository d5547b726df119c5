package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rookery-ml/rookery/graph"
	"github.com/rookery-ml/rookery/internal/synth"
	"github.com/rookery-ml/rookery/partition"
)

func init() {
	register(command{"plan", "split a graph file or a synthetic graph into k parts and report the plan", runPlan})
}

const planUsage = `usage: rookery plan [flags] GRAPH-FILE
       rookery plan [flags] --synthetic SPEC

Splits a graph into k parts that run as a pipeline and prints, per part,
its nodes, cost, share of the work against its target share and parameter
bytes; then the imbalance, the bytes sent between parts, what the baseline
(the graph's order cut into chunks by cost) would send, and the time taken.

GRAPH-FILE holds the bytes of graph.(*Graph).MarshalBinary. SPEC names a
synthetic graph:
  mlp:layers=50,width=1024,batch=32
  resnet:blocks=16,width=256,batch=32
  random-dag:nodes=100000,seed=1,width=64,batch=16
  classifier:in=784,hidden=1024,layers=2,classes=10,batch=256
(parameters left out take those defaults).

With --executors N it instead chooses how to train the graph on N
executors: for every k parts × r replicas with k·r ≤ N it predicts the
step time (compute, GPipe bubble, values sent across cuts, the sum of the
gradients across replicas, a fixed overhead) from the graph's costs, the
executors' speeds and the link, and marks the fastest (partition.ChooseLayout).

flags:
`

type planFlags struct {
	synthetic  string
	k          int
	capacities string
	imbalance  float64
	seed       int64
	method     string
	json       bool
	dot        string
	executors  int
	speeds     string
	gflops     float64
	memory     string
	link       string
	batch      int
	micro      int
	reduce     string
	update     bool
}

func runPlan(_ context.Context, args []string, stdout, stderr io.Writer) error {
	var f planFlags
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), planUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&f.synthetic, "synthetic", "", "build the synthetic graph `SPEC` instead of reading a file")
	fs.IntVar(&f.k, "k", 2, "number of parts")
	fs.StringVar(&f.capacities, "capacities", "", "relative capacity of each part, comma-separated, e.g. `1,1,2` (default all equal)")
	fs.Float64Var(&f.imbalance, "imbalance", partition.DefaultMaxImbalance, "largest allowed excess of a part over its share of the work")
	fs.Int64Var(&f.seed, "seed", 0, "seed of the partitioner's random choices")
	fs.StringVar(&f.method, "method", "auto", "algorithm: auto, chain, order, multilevel or baseline")
	fs.BoolVar(&f.json, "json", false, "print the report as JSON")
	fs.StringVar(&f.dot, "dot", "", "also write the graph in DOT to `FILE`, nodes coloured by part")
	fs.IntVar(&f.executors, "executors", 0, "choose k parts × r replicas for `N` executors instead of splitting into -k parts")
	fs.StringVar(&f.speeds, "speeds", "", "with --executors: relative speed of each executor, comma-separated, e.g. `1,1,0.5` (default all 1)")
	fs.Float64Var(&f.gflops, "gflops", partition.DefaultSpeed/1e9, "with --executors: GFLOP/s of an executor of speed 1")
	fs.StringVar(&f.memory, "memory", "", "with --executors: memory of each executor in MiB, comma-separated, or one for all (default unknown)")
	fs.StringVar(&f.link, "link", "", "with --executors: each executor's link as `RATE:RTT`, e.g. 1gbit:1ms or 20mbit:50ms (default 10gbit:0.2ms)")
	fs.IntVar(&f.batch, "batch", 0, "with --synthetic: the batch size (rows of a mini-batch)")
	fs.IntVar(&f.micro, "micro", 1, "with --executors: micro-batches per replica")
	fs.StringVar(&f.reduce, "reduce", "auto", "with --executors: where replicas sum their gradients: auto (the cheaper of a ring between the executors, which shards the update, and the requester), ring, or requester")
	fs.BoolVar(&f.update, "update", false, "with --executors: price the update too (partition.DefaultUpdateFLOPsPerByte, calibrated for --gflops from providers' start-up benchmarks)")
	// Flags may come before or after the file name.
	var files []string
	for {
		if err := parseFlags(fs, args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		args = fs.Args()[1:]
	}

	var opts []partition.Option
	caps, err := parseCapacities(f.capacities)
	if err != nil {
		return err
	}
	if caps != nil {
		opts = append(opts, partition.WithCapacities(caps))
	}
	method, err := parseMethod(f.method)
	if err != nil {
		return err
	}
	opts = append(opts, partition.WithMaxImbalance(f.imbalance), partition.WithSeed(f.seed), partition.WithMethod(method))

	var (
		g    *graph.Graph
		name string
	)
	start := time.Now()
	switch {
	case f.synthetic != "" && len(files) > 0:
		return usagef("give a graph file or --synthetic, not both")
	case f.synthetic != "":
		if f.batch > 0 {
			sep := ","
			if !strings.Contains(f.synthetic, ":") {
				sep = ":"
			} else if strings.HasSuffix(f.synthetic, ":") {
				sep = ""
			}
			f.synthetic += sep + "batch=" + strconv.Itoa(f.batch)
		}
		name = f.synthetic
		if g, err = synth.Parse(f.synthetic); err != nil {
			return err
		}
	case len(files) == 1 && f.batch > 0:
		return usagef("--batch needs --synthetic: a graph file has its batch")
	case len(files) == 1:
		name = files[0]
		b, err := os.ReadFile(files[0])
		if err != nil {
			return err
		}
		g = graph.New()
		if err := g.UnmarshalBinary(b); err != nil {
			return fmt.Errorf("%s: %w", files[0], err)
		}
	case len(files) > 1:
		return usagef("one graph file at a time, got %d", len(files))
	default:
		return usagef("no graph: give a graph file or --synthetic SPEC")
	}
	loaded := time.Since(start)
	if f.executors > 0 {
		return runLayout(stdout, name, g, f, opts)
	}

	start = time.Now()
	plan, err := partition.Split(g, f.k, opts...)
	took := time.Since(start)
	if err != nil {
		return err
	}
	if err := plan.Validate(g); err != nil {
		return fmt.Errorf("the plan does not fit the graph (a bug): %w", err)
	}
	rep := newReport(name, g, plan, f, loaded, took)
	if f.dot != "" {
		if err := writeDOT(f.dot, g, plan); err != nil {
			return err
		}
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	rep.writeText(stdout)
	return nil
}

func parseCapacities(s string) ([]float64, error) { return parseNumbers("--capacities", s) }

// parseNumbers reads the comma-separated numbers of flag name.
func parseNumbers(name, s string) ([]float64, error) {
	if s == "" {
		return nil, nil
	}
	var caps []float64
	for _, field := range strings.Split(s, ",") {
		c, err := strconv.ParseFloat(strings.TrimSpace(field), 64)
		if err != nil {
			return nil, usagef("%s: %q is not a number", name, field)
		}
		caps = append(caps, c)
	}
	return caps, nil
}

func parseMethod(s string) (partition.Method, error) {
	for m := partition.MethodAuto; m <= partition.MethodBaseline; m++ {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, usagef("--method: unknown method %q (want auto, chain, order, multilevel or baseline)", s)
}

func writeDOT(path string, g *graph.Graph, plan *partition.Plan) error {
	part := plan.Assignment()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = g.WriteDOTWith(f, graph.DOTGroups(func(id int64) (int, bool) {
		p, ok := part[id]
		return p, ok
	}))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// report is what `rookery plan` prints, as a table or as JSON.
type report struct {
	Graph            string        `json:"graph"`
	Nodes            int           `json:"nodes"`
	TotalFLOPs       float64       `json:"total_flops"`
	K                int           `json:"k"`
	Capacities       []float64     `json:"capacities"`
	MaxImbalance     float64       `json:"max_imbalance"`
	Seed             int64         `json:"seed"`
	Method           string        `json:"method"`
	Parts            []partReport  `json:"parts"`
	Imbalance        float64       `json:"imbalance"`
	Cuts             int           `json:"cuts"`
	CutBytes         int64         `json:"cut_bytes"`
	BaselineCutBytes int64         `json:"baseline_cut_bytes"`
	SharedParams     []sharedParam `json:"shared_params"`
	LoadSeconds      float64       `json:"load_seconds"`
	SplitSeconds     float64       `json:"split_seconds"`
}

type partReport struct {
	Part        int     `json:"part"`
	Nodes       int     `json:"nodes"`
	FLOPs       float64 `json:"flops"`
	Share       float64 `json:"share"`        // of the total work
	TargetShare float64 `json:"target_share"` // capacity over the sum
	ParamBytes  int64   `json:"param_bytes"`
	InBytes     int64   `json:"in_bytes"`  // received from other parts
	OutBytes    int64   `json:"out_bytes"` // sent to other parts
}

type sharedParam struct {
	Param int64 `json:"param"`
	Owner int   `json:"owner"`
	Users []int `json:"users"`
}

func newReport(name string, g *graph.Graph, p *partition.Plan, f planFlags, loaded, took time.Duration) *report {
	r := &report{
		Graph:            name,
		Nodes:            g.Len(),
		TotalFLOPs:       p.TotalCost(),
		K:                p.K(),
		Capacities:       p.Capacities,
		MaxImbalance:     p.MaxImbalance,
		Seed:             f.seed,
		Method:           p.Method.String(),
		Imbalance:        p.Imbalance(),
		Cuts:             len(p.Cuts),
		CutBytes:         p.CutBytes(),
		BaselineCutBytes: p.BaselineCutBytes,
		SharedParams:     []sharedParam{},
		LoadSeconds:      loaded.Seconds(),
		SplitSeconds:     took.Seconds(),
	}
	for i, pt := range p.Parts {
		share := 0.0
		if r.TotalFLOPs > 0 {
			share = pt.Cost / r.TotalFLOPs
		}
		r.Parts = append(r.Parts, partReport{Part: i, Nodes: len(pt.Nodes), FLOPs: pt.Cost, Share: share,
			TargetShare: pt.Share, ParamBytes: pt.ParamBytes})
	}
	for _, c := range p.Cuts {
		r.Parts[c.From].OutBytes += c.Bytes
		r.Parts[c.To].InBytes += c.Bytes
	}
	for _, s := range p.SharedParams {
		r.SharedParams = append(r.SharedParams, sharedParam{s.Param, s.Owner, s.Users})
	}
	return r
}

func (r *report) writeText(w io.Writer) {
	fmt.Fprintf(w, "graph      %s: %d nodes, %s FLOPs\n", r.Graph, r.Nodes, si(r.TotalFLOPs))
	fmt.Fprintf(w, "split      k=%d, method %s, seed %d, imbalance bound %.2f%%\n\n", r.K, r.Method, r.Seed, 100*r.MaxImbalance)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "part\tnodes\tFLOPs\tshare\ttarget\tparams\treceives\tsends\t")
	for _, p := range r.Parts {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%.2f%%\t%.2f%%\t%s\t%s\t%s\t\n", p.Part, p.Nodes, si(p.FLOPs),
			100*p.Share, 100*p.TargetShare, bytesText(p.ParamBytes), bytesText(p.InBytes), bytesText(p.OutBytes))
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintf(w, "imbalance  %.2f%% (bound %.2f%%)\n", 100*r.Imbalance, 100*r.MaxImbalance)
	fmt.Fprintf(w, "cut        %s in %d transfers", bytesText(r.CutBytes), r.Cuts)
	if r.BaselineCutBytes > 0 {
		fmt.Fprintf(w, ", %.1f%% of the baseline's %s", 100*float64(r.CutBytes)/float64(r.BaselineCutBytes), bytesText(r.BaselineCutBytes))
	} else {
		fmt.Fprintf(w, ", baseline %s", bytesText(r.BaselineCutBytes))
	}
	fmt.Fprintln(w)
	if len(r.SharedParams) > 0 {
		fmt.Fprintf(w, "shared     %d parameters used by more than one part\n", len(r.SharedParams))
	}
	fmt.Fprintf(w, "time       %.3fs to split (%.3fs to load the graph)\n", r.SplitSeconds, r.LoadSeconds)
}

// si writes a count with an SI prefix: 1.25G.
func si(v float64) string {
	for _, u := range []struct {
		s string
		f float64
	}{{"P", 1e15}, {"T", 1e12}, {"G", 1e9}, {"M", 1e6}, {"k", 1e3}} {
		if v >= u.f {
			return fmt.Sprintf("%.3g%s", v/u.f, u.s)
		}
	}
	return fmt.Sprintf("%.0f", v)
}

// bytesText writes a byte count in binary units: 1.5 MiB.
func bytesText(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	v, i := float64(b), 0
	for v >= unit && i < 5 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTP"[i-1])
}
