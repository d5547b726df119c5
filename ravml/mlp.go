package ravml

import (
	"context"
	"fmt"
	"math"
	"math/rand"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
)

// MLPClassifier is a multi-layer perceptron with ReLU hidden layers and a
// softmax output, trained as scikit-learn's default: Adam (LearnRate
// 1e-3), mini-batches of min(200, rows) (BatchRows), L2 penalty alpha
// 1e-4 (Ridge), Glorot-uniform initialisation from Seed, at most MaxIter
// (200) epochs, stopping when the training loss has not improved by Tol
// (1e-4) for 10 epochs.
//
// Data-parallel: every shard holds its rows and one-hot labels. Each step
// the requester draws a mini-batch, feeds every shard the weights and the
// indexes of its own rows in the batch (gather_rows), runs Forward and
// Backward there — the shard's graph holds the summed cross-entropy of
// its rows, and Gorgonia differentiates it on the shard — adds the
// shards' weight gradients and applies Adam. The gradient of a batch is
// the same however its rows are spread, so the shard count changes the
// result only by rounding.
//
// The per-shard graph is built directly in the IR rather than through
// package ravdl.
type MLPClassifier struct {
	cfg     config
	Hidden  []int
	Classes int
	Width   int
	// Weights holds one (fan_in+1) × fan_out matrix per layer; the last
	// row is the bias.
	Weights [][]float64
	Loss    float64 // training loss of the last epoch
	Epochs  int
}

// NewMLPClassifier returns a perceptron with the given hidden layer sizes
// (scikit-learn's default is []int{100}).
func NewMLPClassifier(hidden []int, opts ...Option) *MLPClassifier {
	cfg := newConfig(append([]Option{BatchRows(200), Ridge(1e-4)}, opts...))
	return &MLPClassifier{cfg: cfg, Hidden: append([]int(nil), hidden...)}
}

// Fit trains the network; y holds class indexes.
func (m *MLPClassifier) Fit(ctx context.Context, X *tensor.Dense, y []float64) error {
	cfg := m.cfg
	if err := cfg.check("MLPClassifier", "Seed", "MaxIter", "Tol", "Ridge", "BatchRows", "LearnRate"); err != nil {
		return err
	}
	for _, h := range m.Hidden {
		if h < 1 {
			return &ParamError{Name: "hidden", Reason: fmt.Sprintf("layer size %d must be positive", h)}
		}
	}
	if cfg.batch < 1 || !(cfg.learn > 0) || cfg.alpha < 0 {
		return &ParamError{Name: "MLPClassifier", Reason: "need BatchRows ≥ 1, LearnRate > 0, Ridge ≥ 0"}
	}
	x, err := asMatrix(X)
	if err != nil {
		return err
	}
	c, err := checkLabels(y, x.rows)
	if err != nil {
		return err
	}
	c = max(c, 2)
	n, d := x.rows, x.cols
	bs := min(cfg.batch, n)
	sizes := append(append([]int{d}, m.Hidden...), c)
	layers := len(sizes) - 1

	const xID, yID, idxID = 1, 2, 3
	wIDs := make([]int64, layers)
	var lossID int64
	spec := func(_ int, rows int) (*graph.Graph, []int64, error) {
		b := newBuilder()
		b.input("x", rows, d+1)
		b.input("y", rows, c)
		b.input("batch", bs)
		for l := 0; l < layers; l++ {
			wIDs[l] = b.input(fmt.Sprintf("w%d", l), sizes[l]+1, sizes[l+1])
		}
		h := b.op(graph.KindGatherRows, nil, graph.Shape{bs, d + 1}, xID, idxID)
		yb := b.op(graph.KindGatherRows, nil, graph.Shape{bs, c}, yID, idxID)
		zero := b.constant("zero", tensor.New(tensor.FromScalar(0.0)))
		ones := b.constant("ones", dense(onesOf(bs), bs, 1))
		for l := 0; l < layers; l++ {
			z := b.op(graph.KindMatMul, nil, graph.Shape{bs, sizes[l+1]}, h, wIDs[l])
			if l == layers-1 {
				h = z
				break
			}
			mask := b.op(graph.KindGte, attrs(graph.BoolAttr("ret_same", true)), graph.Shape{bs, sizes[l+1]}, z, zero)
			a := b.op(graph.KindMul, nil, graph.Shape{bs, sizes[l+1]}, z, mask)
			h = b.op(graph.KindConcat, attrs(graph.IntAttr("axis", 1)), graph.Shape{bs, sizes[l+1] + 1}, a, ones)
		}
		ls := b.op(graph.KindSoftmax, attrs(graph.IntAttr("axis", 1), graph.BoolAttr("log", true)), graph.Shape{bs, c}, h)
		yl := b.op(graph.KindMul, nil, graph.Shape{bs, c}, yb, ls)
		s := b.op(graph.KindSum, attrs(graph.AxesAttr("axes", 0, 1)), nil, yl)
		lossID = b.op(graph.KindNeg, nil, nil, s)
		return b.g, nil, b.err
	}
	// build once here so that wIDs and lossID are known before the shards
	// open (every shard's graph has the same ids)
	if _, _, err := spec(0, n); err != nil {
		return err
	}
	ids := append([]int64(nil), wIDs...)
	loss := lossID
	adjust := func(sp *exec.SessionSpec) {
		sp.DataInputs = []int64{xID, yID, idxID}
		sp.Inputs = ids
		sp.Loss, sp.HasLoss = loss, true
	}
	onehot := make([]float64, n*c)
	for i, v := range y {
		onehot[i*c+int(v)] = 1
	}
	resident := func(lo, hi int) map[int64]*tensor.Dense {
		return map[int64]*tensor.Dense{
			xID: dense(augment(x, lo, hi, one, 1), hi-lo, d+1),
			yID: dense(onehot[lo*c:hi*c], hi-lo, c),
		}
	}
	j, err := openJob(ctx, &m.cfg, n, spec, resident, adjust)
	if err != nil {
		return err
	}
	defer j.close()

	rng := rand.New(rand.NewSource(cfg.seed))
	w := make([][]float64, layers)
	mom := make([][]float64, layers)
	vel := make([][]float64, layers)
	grad := make([][]float64, layers)
	for l := range w {
		fanIn, fanOut := sizes[l], sizes[l+1]
		bound := math.Sqrt(6 / float64(fanIn+fanOut))
		if l == layers-1 {
			bound = math.Sqrt(2 / float64(fanIn+fanOut)) // scikit-learn's factor for a softmax output
		}
		w[l] = make([]float64, (fanIn+1)*fanOut)
		for i := range w[l] {
			w[l][i] = (2*rng.Float64() - 1) * bound
		}
		mom[l] = make([]float64, len(w[l]))
		vel[l] = make([]float64, len(w[l]))
		grad[l] = make([]float64, len(w[l]))
	}
	maxIter := cfg.maxIter
	if maxIter <= 0 {
		maxIter = 200
	}
	tol := cfg.tol
	if tol <= 0 {
		tol = 1e-4
	}
	idxBufs := make([][]float64, len(j.sessions))
	for s := range idxBufs {
		idxBufs[s] = make([]float64, bs)
	}
	const beta1, beta2, eps = 0.9, 0.999, 1e-8
	step := 0
	best := math.Inf(1)
	noImprove := 0
	epoch := 0
	for epoch = 1; epoch <= maxIter; epoch++ {
		perm := rng.Perm(n)
		epochLoss := 0.0
		for start := 0; start < n; start += bs {
			batch := perm[start:min(n, start+bs)]
			for s := range idxBufs {
				ib := idxBufs[s][:0]
				for _, r := range batch {
					if r >= j.lo[s] && r < j.hi[s] {
						ib = append(ib, float64(r-j.lo[s]))
					}
				}
				for len(ib) < bs {
					ib = append(ib, -1)
				}
			}
			feeds := func(s int) map[int64]*tensor.Dense {
				f := map[int64]*tensor.Dense{idxID: dense(idxBufs[s], bs)}
				for l, id := range ids {
					f[id] = dense(w[l], sizes[l]+1, sizes[l+1])
				}
				return f
			}
			outs, err := j.forward(ctx, feeds)
			if err != nil {
				return err
			}
			grads, err := j.backward(ctx)
			if err != nil {
				return err
			}
			nb := float64(len(batch))
			lossSum := 0.0
			for _, o := range outs {
				lossSum += o[loss].Float64s()[0]
			}
			for l := range grad {
				clear(grad[l])
				for _, g := range grads {
					addTo(grad[l], g[ids[l]].Float64s())
				}
			}
			reg := 0.0
			for l := range w {
				nw := sizes[l] * sizes[l+1] // weight rows, not the bias row
				for i := range grad[l] {
					if i < nw {
						reg += w[l][i] * w[l][i]
						grad[l][i] += cfg.alpha * w[l][i]
					}
					grad[l][i] /= nb
				}
			}
			epochLoss += lossSum + 0.5*cfg.alpha*reg
			step++
			lr := cfg.learn * math.Sqrt(1-math.Pow(beta2, float64(step))) / (1 - math.Pow(beta1, float64(step)))
			for l := range w {
				for i, g := range grad[l] {
					mom[l][i] = beta1*mom[l][i] + (1-beta1)*g
					vel[l][i] = beta2*vel[l][i] + (1-beta2)*g*g
					w[l][i] -= lr * mom[l][i] / (math.Sqrt(vel[l][i]) + eps)
				}
			}
		}
		epochLoss /= float64(n)
		m.Loss = epochLoss
		if epochLoss > best-tol {
			noImprove++
		} else {
			noImprove = 0
		}
		best = min(best, epochLoss)
		if noImprove > 10 {
			break
		}
	}
	m.Weights, m.Classes, m.Width, m.Epochs = w, c, d, min(epoch, maxIter)
	return nil
}

func onesOf(n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = 1
	}
	return v
}

// Proba returns the class probabilities of each row (rows × classes).
func (m *MLPClassifier) Proba(ctx context.Context, X *tensor.Dense) ([]float64, error) {
	if m.Weights == nil {
		return nil, notFitted("MLPClassifier")
	}
	x, err := asMatrix(X)
	if err != nil {
		return nil, err
	}
	if err := checkWidth(x, m.Width); err != nil {
		return nil, err
	}
	h := x
	for l, w := range m.Weights {
		out := len(w) / (h.cols + 1)
		z := linearScores(h, w, out)
		if l < len(m.Weights)-1 {
			for i, v := range z {
				z[i] = max(0, v)
			}
		} else {
			for i := 0; i < x.rows; i++ {
				softmaxInPlace(z[i*out : (i+1)*out])
			}
		}
		h = matrix{rows: x.rows, cols: out, data: z}
	}
	return h.data, nil
}

func softmaxInPlace(v []float64) {
	mx := math.Inf(-1)
	for _, x := range v {
		mx = max(mx, x)
	}
	s := 0.0
	for i, x := range v {
		v[i] = math.Exp(x - mx)
		s += v[i]
	}
	for i := range v {
		v[i] /= s
	}
}

// Predict returns the most likely class of each row.
func (m *MLPClassifier) Predict(ctx context.Context, X *tensor.Dense) ([]float64, error) {
	p, err := m.Proba(ctx, X)
	if err != nil {
		return nil, err
	}
	return argmaxRows(p, m.Classes), nil
}

// Score returns the accuracy on X and y.
func (m *MLPClassifier) Score(ctx context.Context, X *tensor.Dense, y []float64) (float64, error) {
	return scoreWith(ctx, m.Predict, X, y, Accuracy)
}
