package ravml

import (
	"context"
	"fmt"
	"math"
	"sort"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/graph"
)

// Criterion is the impurity a decision tree minimises.
type Criterion uint8

// Criteria.
const (
	Gini    Criterion = iota // classification (default)
	Entropy                  // classification, information gain
	MSE                      // regression (the regressor's only criterion)
)

// WithCriterion sets the impurity of DecisionTreeClassifier.
func WithCriterion(c Criterion) Option {
	return func(cf *config) { cf.crit = c; cf.mark("WithCriterion") }
}

// TreeNode is one node of a fitted tree. An inner node sends a row to
// Left when row[Feature] ≤ Threshold and to Left+1 otherwise; a leaf has
// Feature −1.
type TreeNode struct {
	Feature   int
	Threshold float64
	Left      int
	Samples   float64
	Impurity  float64
	// Value holds the class counts of a classifier's node, or the mean
	// target of a regressor's.
	Value []float64

	bin   int       // split bin (codes ≤ bin go left)
	stats []float64 // per channel sums of the weights
	depth int
}

// tree is the CART grower shared by the classifier and the regressor.
//
// Features are binned on the requester: a feature with at most MaxBins
// distinct training values gets one bin per value, so splits are exactly
// CART's (thresholds half-way between neighbouring values present in the
// node); otherwise bins are quantiles. Each shard holds its rows' bin
// codes and weights (one-hot classes, or [1 y y²] for regression). The
// tree grows level by level: for a batch of open nodes the shards route
// their rows through the tree so far (tree_route), keep those in the
// batch (take) and return per node, feature, bin and channel sums
// (histogram); the requester adds them and picks the best split per node.
// A node of at most 200 rows is not split that way: the shards return its
// rows' codes and weights (group_rows, gather_rows) in the same pass, and
// the requester grows its whole subtree with the same rule. Class counts
// are integers, so a classifier is the same whatever the number of
// shards.
type tree struct {
	cfg     config
	name    string
	Nodes   []TreeNode
	Width   int
	Classes int // 0 for regression
}

// histogramBudget bounds the floats of one histogram pass per shard (16
// MiB of float64): larger passes split more nodes at once, so fewer
// passes route every row, but their outputs cost more to copy. On MNIST
// (784 features, 32 bins, 10 classes: 8 nodes a pass) 2²¹ fitted in 13.0 s,
// 2²⁰ in 23.5 s, 2²² in 14.1–14.7 s (bench/ravml).
const histogramBudget = 1 << 21

func (t *tree) fit(ctx context.Context, X *tensor.Dense, y []float64, classes int) error {
	if err := t.cfg.check(t.name, "MaxDepth", "MinSamplesSplit", "MinSamplesLeaf", "MaxBins", "WithCriterion"); err != nil {
		return err
	}
	cfg := t.cfg
	if cfg.maxDepth < 0 || cfg.minSplit < 2 || cfg.minLeaf < 1 || cfg.maxBins < 2 {
		return &ParamError{Name: "tree", Reason: fmt.Sprintf("need MaxDepth ≥ 0, MinSamplesSplit ≥ 2, MinSamplesLeaf ≥ 1, MaxBins ≥ 2; got %d, %d, %d, %d",
			cfg.maxDepth, cfg.minSplit, cfg.minLeaf, cfg.maxBins)}
	}
	x, err := asMatrix(X)
	if err != nil {
		return err
	}
	n, d := x.rows, x.cols
	// binning
	edges := make([][]float64, d)  // upper value of each bin
	lowest := make([][]float64, d) // smallest value of each bin
	nb := 1
	col := make([]float64, n)
	for f := 0; f < d; f++ {
		for i := range col {
			col[i] = x.data[i*d+f]
		}
		edges[f], lowest[f] = binsOf(col, cfg.maxBins)
		nb = max(nb, len(edges[f]))
	}
	codes := make([]float64, n*d)
	for i := 0; i < n; i++ {
		for f := 0; f < d; f++ {
			codes[i*d+f] = float64(sort.SearchFloat64s(edges[f], x.data[i*d+f]))
		}
	}
	c := classes
	if c == 0 {
		c = 3
	}
	w := make([]float64, n*c)
	for i, v := range y {
		if classes > 0 {
			w[i*c+int(v)] = 1
		} else {
			w[i*c], w[i*c+1], w[i*c+2] = 1, v, v*v
		}
	}
	capNodes := 2*n - 1
	if cfg.maxDepth > 0 && cfg.maxDepth < 30 {
		capNodes = min(capNodes, 1<<(cfg.maxDepth+1)-1)
	}
	per := d * nb * c
	groups := max(1, min(histogramBudget/per, n))
	// Nodes of at most smallNode rows are not split by histograms: the
	// shards return their rows (bin codes and weights) and the requester
	// grows the whole subtree below them at once, with the same split rule.
	// The shards return the rows of such nodes as row indexes, and the
	// requester, which binned the rows, reads their codes and weights from
	// its own copy.
	limit := min(smallNode, n)
	rowGroups := max(1, min(smallNodesPerPass, n))
	const codeID, wID, treeID, slotID, rowSlotID, histID, listsID = 1, 2, 3, 4, 5, 8, 10
	spec := func(_ int, rows int) (*graph.Graph, []int64, error) {
		b := newBuilder()
		b.input("codes", rows, d)
		b.input("weights", rows, c)
		b.input("tree", capNodes, 3)
		b.input("slots", capNodes)
		b.input("row_slots", capNodes)
		leaf := b.op(graph.KindTreeRoute, nil, graph.Shape{rows}, codeID, treeID)
		grp := b.op(graph.KindTake, nil, graph.Shape{rows}, slotID, leaf)
		b.op(graph.KindHistogram, attrs(graph.IntAttr("groups", groups), graph.IntAttr("bins", nb)), graph.Shape{groups, d, nb, c}, codeID, grp, wID)
		grp2 := b.op(graph.KindTake, nil, graph.Shape{rows}, rowSlotID, leaf)
		b.op(graph.KindGroupRows, attrs(graph.IntAttr("groups", rowGroups), graph.IntAttr("limit", limit)), graph.Shape{rowGroups, limit}, grp2)
		return b.g, []int64{histID, listsID}, b.err
	}
	resident := func(lo, hi int) map[int64]*tensor.Dense {
		return map[int64]*tensor.Dense{
			codeID: dense(codes[lo*d:hi*d], hi-lo, d),
			wID:    dense(w[lo*c:hi*c], hi-lo, c),
		}
	}
	j, err := openJob(ctx, &t.cfg, n, spec, resident)
	if err != nil {
		return err
	}
	defer j.close()

	root := TreeNode{Feature: -1, stats: make([]float64, c)}
	for i := 0; i < n; i++ {
		addTo(root.stats, w[i*c:(i+1)*c])
	}
	nodes := []TreeNode{root}
	t.finish(&nodes[0], classes)
	frontier := []int{}
	if t.splittable(&nodes[0], classes) {
		frontier = append(frontier, 0)
	}
	treeBuf := make([]float64, capNodes*3)
	slots := make([]float64, capNodes)
	rowSlots := make([]float64, capNodes)
	hist := make([]float64, groups*per)
	feeds := map[int64]*tensor.Dense{treeID: dense(treeBuf, capNodes, 3), slotID: dense(slots, capNodes), rowSlotID: dense(rowSlots, capNodes)}
	g := grower{t: t, d: d, nb: nb, c: c, classes: classes, edges: edges, lowest: lowest, capNodes: capNodes, nodes: nodes, h: make([]float64, per)}
	for len(frontier) > 0 {
		var big, small []int
		for _, id := range frontier {
			if g.nodes[id].Samples <= float64(limit) {
				small = append(small, id)
			} else {
				big = append(big, id)
			}
		}
		var next []int
		for len(big) > 0 || len(small) > 0 {
			hb := big[:min(len(big), groups)]
			sb := small[:min(len(small), rowGroups)]
			big, small = big[len(hb):], small[len(sb):]
			for i := range g.nodes {
				nd := &g.nodes[i]
				treeBuf[i*3], treeBuf[i*3+1], treeBuf[i*3+2] = float64(nd.Feature), float64(nd.bin), float64(nd.Left)
				if nd.Feature < 0 {
					treeBuf[i*3] = -1
				}
			}
			for i := range slots {
				slots[i], rowSlots[i] = -1, -1
			}
			for s, id := range hb {
				slots[id] = float64(s)
			}
			for s, id := range sb {
				rowSlots[id] = float64(s)
			}
			outs, err := j.forward(ctx, func(int) map[int64]*tensor.Dense { return feeds })
			if err != nil {
				return err
			}
			if len(hb) > 0 {
				clear(hist)
				for _, o := range outs {
					addTo(hist, o[histID].Float64s())
				}
			}
			for s, id := range hb {
				l, ok, err := g.split(id, hist[s*per:(s+1)*per])
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				for _, ch := range []int{l, l + 1} {
					if t.splittable(&g.nodes[ch], classes) {
						next = append(next, ch)
					}
				}
			}
			for s, id := range sb {
				var rc, rw [][]float64
				for sh, o := range outs {
					for _, r := range o[listsID].Float64s()[s*limit : (s+1)*limit] {
						if r < 0 {
							break // padding: the shard's rows of this node are done
						}
						i := j.lo[sh] + int(r)
						rc, rw = append(rc, codes[i*d:(i+1)*d]), append(rw, w[i*c:(i+1)*c])
					}
				}
				if err := g.growLocal(id, rc, rw); err != nil {
					return err
				}
			}
		}
		frontier = next
	}
	nodes = g.nodes
	t.Nodes, t.Width, t.Classes = nodes, d, classes
	return nil
}

// smallNode is the most rows a node may have for its subtree to be grown
// on the requester from the node's rows.
const smallNode = 200

// smallNodesPerPass bounds the small nodes whose rows one pass lists
// (1024 × smallNode row indexes: 1.6 MB of float64 per shard).
const smallNodesPerPass = 1024

// grower holds what splitting a node needs.
type grower struct {
	t             *tree
	d, nb, c      int
	classes       int
	edges, lowest [][]float64
	capNodes      int
	nodes         []TreeNode
	h             []float64 // histogram scratch of growLocal
}

// split splits node id by the best split of its histogram h (features ×
// bins × channels) and returns the index of its left child.
func (g *grower) split(id int, h []float64) (int, bool, error) {
	t, c := g.t, g.c
	f, b, left, ok := t.bestSplit(&g.nodes[id], h, g.d, g.nb, c, g.classes)
	if !ok {
		return 0, false, nil
	}
	right := make([]float64, c)
	for k := range right {
		right[k] = g.nodes[id].stats[k] - left[k]
	}
	// the smallest bin above b that holds rows of the node
	b2 := b + 1
	for ; b2 < len(g.edges[f]); b2++ {
		if sumBin(h, f, b2, g.nb, c) > 0 {
			break
		}
	}
	if len(g.nodes)+2 > g.capNodes {
		return 0, false, fmt.Errorf("ravml: %s: tree outgrew its %d nodes", t.name, g.capNodes)
	}
	nd := &g.nodes[id]
	nd.Feature, nd.bin, nd.Left = f, b, len(g.nodes)
	nd.Threshold = (g.edges[f][b] + g.lowest[f][b2]) / 2
	if !(nd.Threshold < g.lowest[f][b2]) { // neighbouring floats
		nd.Threshold = g.edges[f][b]
	}
	depth := nd.depth + 1
	for _, st := range [][]float64{left, right} {
		ch := TreeNode{Feature: -1, stats: st, depth: depth}
		t.finish(&ch, g.classes)
		g.nodes = append(g.nodes, ch)
	}
	return len(g.nodes) - 2, true, nil
}

// growLocal grows the subtree below node id from the node's rows (bin
// codes and weights), depth first.
func (g *grower) growLocal(id int, codes, w [][]float64) error {
	if !g.t.splittable(&g.nodes[id], g.classes) {
		return nil
	}
	nb, c := g.nb, g.c
	h := g.h
	clear(h)
	for i, row := range codes {
		for f, bv := range row {
			addTo(h[(f*nb+int(bv))*c:(f*nb+int(bv)+1)*c], w[i])
		}
	}
	l, ok, err := g.split(id, h)
	if err != nil || !ok {
		return err
	}
	f, b := g.nodes[id].Feature, float64(g.nodes[id].bin)
	var lc, lw, rc, rw [][]float64
	for i, row := range codes {
		if row[f] <= b {
			lc, lw = append(lc, row), append(lw, w[i])
		} else {
			rc, rw = append(rc, row), append(rw, w[i])
		}
	}
	if err := g.growLocal(l, lc, lw); err != nil {
		return err
	}
	return g.growLocal(l+1, rc, rw)
}

// binsOf returns the bin edges of a column: its distinct values when
// there are at most maxBins of them, else maxBins quantiles; and the
// smallest value in each bin.
func binsOf(col []float64, maxBins int) (edges, lowest []float64) {
	s := append([]float64(nil), col...)
	sort.Float64s(s)
	var uniq []float64
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			uniq = append(uniq, v)
		}
	}
	if len(uniq) <= maxBins {
		return uniq, uniq
	}
	for b := 1; b <= maxBins; b++ {
		e := s[min(len(s)-1, b*len(s)/maxBins-1)]
		if b == maxBins {
			e = s[len(s)-1]
		}
		if len(edges) == 0 || e > edges[len(edges)-1] {
			edges = append(edges, e)
		}
	}
	lowest = make([]float64, len(edges))
	for b := range edges {
		if b == 0 {
			lowest[b] = uniq[0]
			continue
		}
		i := sort.SearchFloat64s(uniq, edges[b-1])
		lowest[b] = uniq[i+1]
	}
	return edges, lowest
}

func sumBin(h []float64, f, b, nb, c int) float64 {
	s := 0.0
	for _, v := range h[(f*nb+b)*c : (f*nb+b+1)*c] {
		s += v
	}
	return s
}

// count is the number of rows behind per-channel sums.
func count(st []float64, classes int) float64 {
	if classes == 0 {
		return st[0]
	}
	s := 0.0
	for _, v := range st {
		s += v
	}
	return s
}

func (t *tree) impurity(st []float64, classes int) float64 {
	n := count(st, classes)
	if n == 0 {
		return 0
	}
	if classes == 0 {
		m := st[1] / n
		return max(0, st[2]/n-m*m)
	}
	if t.cfg.crit == Entropy {
		e := 0.0
		for _, v := range st {
			if v > 0 {
				p := v / n
				e -= p * math.Log2(p)
			}
		}
		return e
	}
	g := 1.0
	for _, v := range st {
		p := v / n
		g -= p * p
	}
	return g
}

// finish fills in a node's sample count, impurity and value.
func (t *tree) finish(nd *TreeNode, classes int) {
	nd.Samples = count(nd.stats, classes)
	nd.Impurity = t.impurity(nd.stats, classes)
	if classes == 0 {
		nd.Value = []float64{nd.stats[1] / nd.Samples}
	} else {
		nd.Value = append([]float64(nil), nd.stats...)
	}
}

func (t *tree) splittable(nd *TreeNode, classes int) bool {
	cfg := t.cfg
	if cfg.maxDepth > 0 && nd.depth >= cfg.maxDepth {
		return false
	}
	return nd.Samples >= float64(cfg.minSplit) && nd.Samples >= float64(2*cfg.minLeaf) && nd.Impurity > 1e-12
}

// proxy is a quantity that the best split maximises: minus the weighted
// child impurity, up to terms that do not depend on the split.
func (t *tree) proxy(st []float64, n float64, classes int) float64 {
	if classes == 0 {
		return st[1] * st[1] / n
	}
	if t.cfg.crit == Entropy {
		e := 0.0
		for _, v := range st {
			if v > 0 {
				e += v * math.Log2(v/n)
			}
		}
		return e
	}
	s := 0.0
	for _, v := range st {
		s += v * v
	}
	return s / n
}

// bestSplit scans a node's histogram (features × bins × channels) and
// returns the feature and bin of the best split and the left side's
// sums; ties go to the lower feature, then the lower bin.
func (t *tree) bestSplit(nd *TreeNode, h []float64, d, nb, c, classes int) (int, int, []float64, bool) {
	minLeaf := float64(t.cfg.minLeaf)
	total := nd.stats
	n := nd.Samples
	best := math.Inf(-1)
	bf, bb := -1, -1
	left := make([]float64, c)
	right := make([]float64, c)
	bestLeft := make([]float64, c)
	for f := 0; f < d; f++ {
		clear(left)
		for b := 0; b < nb-1; b++ {
			addTo(left, h[(f*nb+b)*c:(f*nb+b+1)*c])
			nl := count(left, classes)
			if nl < minLeaf {
				continue
			}
			nr := n - nl
			if nr < minLeaf {
				break
			}
			if sumBin(h, f, b, nb, c) == 0 {
				continue // the same split as at the last non-empty bin
			}
			for k := range right {
				right[k] = total[k] - left[k]
			}
			p := t.proxy(left, nl, classes) + t.proxy(right, nr, classes)
			if p > best+1e-12*math.Abs(best) || bf < 0 {
				best, bf, bb = p, f, b
				copy(bestLeft, left)
			}
		}
	}
	return bf, bb, bestLeft, bf >= 0
}

func (t *tree) leaf(row []float64) *TreeNode {
	i := 0
	for t.Nodes[i].Feature >= 0 {
		nd := &t.Nodes[i]
		if row[nd.Feature] <= nd.Threshold {
			i = nd.Left
		} else {
			i = nd.Left + 1
		}
	}
	return &t.Nodes[i]
}

func (t *tree) predict(X *tensor.Dense) ([]float64, error) {
	if t.Nodes == nil {
		return nil, notFitted(t.name)
	}
	x, err := asMatrix(X)
	if err != nil {
		return nil, err
	}
	if err := checkWidth(x, t.Width); err != nil {
		return nil, err
	}
	out := make([]float64, x.rows)
	for i := range out {
		v := t.leaf(x.row(i)).Value
		if t.Classes == 0 {
			out[i] = v[0]
			continue
		}
		b := 0
		for k, cnt := range v {
			if cnt > v[b] {
				b = k
			}
		}
		out[i] = float64(b)
	}
	return out, nil
}

// Depth is the length of the longest path from the root to a leaf.
func (t *tree) Depth() int {
	d := 0
	for i := range t.Nodes {
		d = max(d, t.Nodes[i].depth)
	}
	return d
}

// Leaves is the number of leaves.
func (t *tree) Leaves() int {
	n := 0
	for i := range t.Nodes {
		if t.Nodes[i].Feature < 0 {
			n++
		}
	}
	return n
}

// DecisionTreeClassifier is a CART classification tree.
type DecisionTreeClassifier struct{ tree }

// NewDecisionTreeClassifier returns a classification tree (Gini by
// default; see WithCriterion, MaxDepth, MinSamplesSplit, MinSamplesLeaf,
// MaxBins).
func NewDecisionTreeClassifier(opts ...Option) *DecisionTreeClassifier {
	return &DecisionTreeClassifier{tree{cfg: newConfig(opts), name: "DecisionTreeClassifier"}}
}

// Fit grows the tree; y holds class indexes.
func (m *DecisionTreeClassifier) Fit(ctx context.Context, X *tensor.Dense, y []float64) error {
	if m.cfg.crit == MSE {
		return &ParamError{Name: "WithCriterion", Reason: "a classifier takes Gini or Entropy"}
	}
	if X == nil || len(X.Shape()) != 2 {
		return &DataError{Row: -1, Col: -1, Reason: "X must be a matrix (rows × features)"}
	}
	c, err := checkLabels(y, X.Shape()[0])
	if err != nil {
		return err
	}
	return m.fit(ctx, X, y, c)
}

// Predict returns the majority class of each row's leaf.
func (m *DecisionTreeClassifier) Predict(ctx context.Context, X *tensor.Dense) ([]float64, error) {
	return m.predict(X)
}

// Score returns the accuracy on X and y.
func (m *DecisionTreeClassifier) Score(ctx context.Context, X *tensor.Dense, y []float64) (float64, error) {
	return scoreWith(ctx, m.Predict, X, y, Accuracy)
}

// DecisionTreeRegressor is a CART regression tree (squared error).
type DecisionTreeRegressor struct{ tree }

// NewDecisionTreeRegressor returns a regression tree.
func NewDecisionTreeRegressor(opts ...Option) *DecisionTreeRegressor {
	return &DecisionTreeRegressor{tree{cfg: newConfig(opts), name: "DecisionTreeRegressor"}}
}

// Fit grows the tree.
func (m *DecisionTreeRegressor) Fit(ctx context.Context, X *tensor.Dense, y []float64) error {
	if X == nil {
		return &DataError{Row: -1, Col: -1, Reason: "X is nil"}
	}
	if len(X.Shape()) != 2 {
		return &DataError{Row: -1, Col: -1, Reason: fmt.Sprintf("X must be a matrix, has shape %v", X.Shape())}
	}
	if err := checkTargets(y, X.Shape()[0]); err != nil {
		return err
	}
	return m.fit(ctx, X, y, 0)
}

// Predict returns the mean target of each row's leaf.
func (m *DecisionTreeRegressor) Predict(ctx context.Context, X *tensor.Dense) ([]float64, error) {
	return m.predict(X)
}

// Score returns R² on X and y.
func (m *DecisionTreeRegressor) Score(ctx context.Context, X *tensor.Dense, y []float64) (float64, error) {
	return scoreWith(ctx, m.Predict, X, y, R2)
}
