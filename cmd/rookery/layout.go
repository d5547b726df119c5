package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rookery-ml/rookery/graph"
	"github.com/rookery-ml/rookery/partition"
)

// layoutReport is what `rookery plan --executors N` prints.
type layoutReport struct {
	Graph        string            `json:"graph"`
	Batch        int               `json:"batch"`
	Executors    int               `json:"executors"`
	Speeds       []float64         `json:"speeds_flops"`
	Bandwidth    float64           `json:"link_bytes_per_s"`
	LatencyS     float64           `json:"link_latency_s"`
	Requester    float64           `json:"requester_bytes_per_s"`
	MicroBatches int               `json:"micro_batches"`
	Candidates   []candidateReport `json:"candidates"`
	Pick         candidateReport   `json:"pick"`
}

type candidateReport struct {
	K                int       `json:"k"`
	R                int       `json:"r"`
	Chosen           bool      `json:"chosen"`
	StepS            float64   `json:"step_s,omitempty"`
	ComputeS         float64   `json:"compute_s,omitempty"`
	BubbleS          float64   `json:"bubble_s,omitempty"`
	TransferS        float64   `json:"transfer_s,omitempty"`
	ReduceS          float64   `json:"reduce_s,omitempty"`
	SumIn            string    `json:"sum_in,omitempty"`
	UpdateS          float64   `json:"update_s,omitempty"`
	OverheadS        float64   `json:"overhead_s,omitempty"`
	SamplesPerSecond float64   `json:"samples_per_s,omitempty"`
	RowWeights       []float64 `json:"row_weights,omitempty"`
	Executors        []int     `json:"executors,omitempty"`
	Infeasible       string    `json:"infeasible,omitempty"`
}

func runLayout(w io.Writer, name string, g *graph.Graph, f planFlags, split []partition.Option) error {
	n := f.executors
	speeds, err := parseNumbers("--speeds", f.speeds)
	if err != nil {
		return err
	}
	if speeds == nil {
		for range n {
			speeds = append(speeds, 1)
		}
	}
	if len(speeds) != n {
		return usagef("--speeds: %d speeds for %d executors", len(speeds), n)
	}
	for i := range speeds {
		speeds[i] *= f.gflops * 1e9
	}
	opts := []partition.LayoutOption{partition.WithSpeeds(speeds...), partition.WithLayoutMicroBatches(f.micro), partition.WithSplitOptions(split...)}
	bw, lat := partition.DefaultBandwidth, partition.DefaultLatency
	if f.link != "" {
		if bw, lat, err = parseLink(f.link); err != nil {
			return err
		}
	}
	opts = append(opts, partition.WithLink(bw, lat))
	switch f.reduce {
	case "auto":
		opts = append(opts, partition.WithRing(partition.DefaultRingBytesPerFLOP))
	case "ring":
		opts = append(opts, partition.WithRing(partition.DefaultRingBytesPerFLOP), partition.WithRingOnly())
	case "requester":
	default:
		return usagef("--reduce %q: want auto, ring or requester", f.reduce)
	}
	if f.update {
		opts = append(opts, partition.WithUpdateCost(partition.DefaultUpdateFLOPsPerByte))
	}
	if f.memory != "" {
		mem, err := parseNumbers("--memory", f.memory)
		if err != nil {
			return err
		}
		if len(mem) == 1 {
			for len(mem) < n {
				mem = append(mem, mem[0])
			}
		}
		bytes := make([]int64, len(mem))
		for i, m := range mem {
			bytes[i] = int64(m * (1 << 20))
		}
		opts = append(opts, partition.WithMemory(bytes...))
	}
	l, err := partition.ChooseLayout(g, n, opts...)
	if err != nil && (l == nil || len(l.Candidates) == 0) {
		return err
	}
	rep := layoutReport{Graph: name, Batch: l.Batch, Executors: n, Speeds: speeds, Bandwidth: bw, LatencyS: lat.Seconds(), Requester: partition.DefaultRequesterBandwidth, MicroBatches: f.micro}
	for i, c := range l.Candidates {
		cr := candidateReport{K: c.K, R: c.R, Chosen: i == l.Pick}
		if c.Err != nil {
			cr.Infeasible = c.Err.Error()
		} else {
			cr.StepS, cr.ComputeS, cr.BubbleS, cr.TransferS, cr.ReduceS, cr.OverheadS = c.Step, c.Compute, c.Bubble, c.Transfer, c.Reduce, c.Overhead
			cr.UpdateS = c.Update
			switch {
			case c.R > 1 && c.Ring:
				cr.SumIn = "ring"
			case c.R > 1:
				cr.SumIn = "requester"
			}
			cr.SamplesPerSecond, cr.RowWeights, cr.Executors = c.SamplesPerSecond, c.RowWeights, c.Executors
		}
		rep.Candidates = append(rep.Candidates, cr)
		if cr.Chosen {
			rep.Pick = cr
		}
	}
	if f.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if eerr := enc.Encode(rep); eerr != nil {
			return eerr
		}
		return err
	}
	rep.writeText(w)
	return err // ErrLayout when no candidate can run
}

func (r *layoutReport) writeText(w io.Writer) {
	fmt.Fprintf(w, "graph      %s, batch %d\n", r.Graph, r.Batch)
	fmt.Fprintf(w, "executors  %d, link %s/s, latency %v, requester %s/s, %d micro-batches per replica\n\n", r.Executors,
		bytesText(int64(r.Bandwidth)), time.Duration(r.LatencyS*float64(time.Second)), bytesText(int64(r.Requester)), r.MicroBatches)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tk\tr\tstep ms\tcompute\tbubble\ttransfer\treduce\tsum in\tupdate\toverhead\tsamples/s\t")
	var infeasible []candidateReport
	for _, c := range r.Candidates {
		if c.Infeasible != "" {
			infeasible = append(infeasible, c)
			continue
		}
		mark := ""
		if c.Chosen {
			mark = "*"
		}
		ms := func(s float64) string { return strconv.FormatFloat(1e3*s, 'f', 2, 64) }
		sum := c.SumIn
		if sum == "" {
			sum = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t\n", mark, c.K, c.R, ms(c.StepS), ms(c.ComputeS), ms(c.BubbleS),
			ms(c.TransferS), ms(c.ReduceS), sum, ms(c.UpdateS), ms(c.OverheadS), c.SamplesPerSecond)
	}
	tw.Flush()
	for _, c := range infeasible {
		fmt.Fprintf(w, "  k=%d r=%d cannot run: %s\n", c.K, c.R, c.Infeasible)
	}
	if p := r.Pick; p.K > 0 {
		fmt.Fprintf(w, "\npick       k=%d parts × r=%d replicas: %.2f ms a step, %.0f samples/s; row weights %v\n",
			p.K, p.R, 1e3*p.StepS, p.SamplesPerSecond, strings.Trim(fmt.Sprint(p.RowWeights), "[]"))
	} else {
		fmt.Fprintln(w, "\nno layout can run")
	}
}

// parseLink reads RATE:RTT, e.g. 1gbit:1ms, into bytes/s and the one-way
// latency (half the round trip).
func parseLink(s string) (float64, time.Duration, error) {
	rate, rtt, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, usagef("--link: %q is not RATE:RTT (e.g. 1gbit:1ms)", s)
	}
	units := []struct {
		suffix string
		bits   float64
	}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}}
	bw := 0.0
	for _, u := range units {
		if v, found := strings.CutSuffix(strings.ToLower(rate), u.suffix); found {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil || !(x > 0) {
				return 0, 0, usagef("--link: rate %q is not a positive number of bits per second", rate)
			}
			bw = x * u.bits / 8
			break
		}
	}
	if bw == 0 {
		return 0, 0, usagef("--link: rate %q needs a unit: gbit, mbit, kbit or bit", rate)
	}
	d, err := time.ParseDuration(rtt)
	if err != nil || d < 0 {
		return 0, 0, usagef("--link: round trip %q is not a duration", rtt)
	}
	return bw, d / 2, nil
}
