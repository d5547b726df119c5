package ravdl

import (
	"fmt"
	"math"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

type lossKind uint8

const (
	lossCE lossKind = iota
	lossMSE
	lossBCE
)

// Loss is the training objective, always the mean over the batch.
type Loss struct{ kind lossKind }

// CrossEntropy is the softmax cross-entropy computed from logits with a
// log-softmax (numerically stable): the model's last layer gives
// (batch, classes) unnormalised scores. Targets are class indices
// (batch) or probability rows (batch, classes). Its metric is accuracy.
func CrossEntropy() Loss { return Loss{lossCE} }

// MSE is the mean squared error over every output of every sample.
// Targets have the shape of the outputs (a (batch) vector is taken as
// (batch, 1)).
func MSE() Loss { return Loss{lossMSE} }

// BinaryCrossEntropy is the binary cross-entropy computed from logits
// (the model ends without Sigmoid): mean of softplus(z) − y·z over every
// output. Targets are 0/1 (or probabilities) shaped like the outputs.
// Its metric is accuracy at the threshold z = 0.
func BinaryCrossEntropy() Loss { return Loss{lossBCE} }

func (l Loss) String() string {
	return [...]string{"cross_entropy", "mse", "binary_cross_entropy"}[l.kind]
}

// hasAccuracy says whether the loss comes with an accuracy metric.
func (l Loss) hasAccuracy() bool { return l.kind != lossMSE }

// build adds the loss of out against the target node y.
func (l Loss) build(b *builder, out, y *gorgonia.Node) (*gorgonia.Node, error) {
	switch l.kind {
	case lossCE:
		lsm, err := gorgonia.LogSoftMax(out, 1)
		if err != nil {
			return nil, err
		}
		p, err := gorgonia.HadamardProd(lsm, y)
		if err != nil {
			return nil, err
		}
		s, err := gorgonia.Sum(p, 1)
		if err != nil {
			return nil, err
		}
		m, err := gorgonia.Mean(s)
		if err != nil {
			return nil, err
		}
		return gorgonia.Neg(m)
	case lossMSE:
		d, err := gorgonia.Sub(out, y)
		if err != nil {
			return nil, err
		}
		sq, err := gorgonia.Square(d)
		if err != nil {
			return nil, err
		}
		return gorgonia.Mean(sq)
	case lossBCE:
		sp, err := gorgonia.Softplus(out)
		if err != nil {
			return nil, err
		}
		yz, err := gorgonia.HadamardProd(y, out)
		if err != nil {
			return nil, err
		}
		d, err := gorgonia.Sub(sp, yz)
		if err != nil {
			return nil, err
		}
		return gorgonia.Mean(d)
	}
	return nil, fmt.Errorf("%w: unknown loss", ErrConfig)
}

// targets are the y of a data set, checked against the model's outputs
// and kept in the form the loss feeds: class indices or rows of floats.
type targets struct {
	n      int
	labels []int     // class per sample (cross-entropy with indices)
	rows   []float64 // n × width otherwise
	width  int       // size of one output
}

// newTargets checks y against a model whose outputs are outShape per
// sample.
func (l Loss) newTargets(y *tensor.Dense, outShape []int) (*targets, error) {
	y, n, w, err := rowsOf(y, "y")
	if err != nil {
		return nil, err
	}
	width := 1
	for _, d := range outShape {
		width *= d
	}
	t := &targets{n: n, width: width}
	if l.kind == lossCE {
		if len(outShape) != 1 {
			return nil, &ShapeError{Layer: -1, Kind: "output", Got: outShape, Reason: "cross-entropy needs (batch, classes) logits"}
		}
		if y.Shape().Dims() == 1 || w == 1 && width > 1 {
			t.labels = make([]int, n)
			for i := 0; i < n; i++ {
				v := at(y, i)
				if v != math.Trunc(v) || v < 0 || v >= float64(width) {
					return nil, &LabelError{Index: i, Label: v, Classes: width}
				}
				t.labels[i] = int(v)
			}
			return t, nil
		}
	}
	if w != width {
		return nil, &ShapeError{Layer: -1, Kind: "y", Got: []int(y.Shape().Clone()),
			Reason: fmt.Sprintf("%s wants %d values per sample (outputs %v)", l, width, outShape)}
	}
	t.rows = make([]float64, n*w)
	for i := range t.rows {
		t.rows[i] = at(y, i)
	}
	return t, nil
}

// fill writes the targets of samples idx into yb, shaped (len(idx),
// outputs...).
func (t *targets) fill(yb *tensor.Dense, idx []int) {
	switch d := yb.Data().(type) {
	case []float32:
		fillTargets(t, d, idx)
	case []float64:
		fillTargets(t, d, idx)
	}
}

func fillTargets[T float32 | float64](t *targets, d []T, idx []int) {
	w := t.width
	for k, i := range idx {
		out := d[k*w : (k+1)*w]
		if t.labels != nil {
			clear(out)
			out[t.labels[i]] = 1
			continue
		}
		for j, v := range t.rows[i*w : (i+1)*w] {
			out[j] = T(v)
		}
	}
}

// score adds the loss and the number of correct predictions of the
// outputs out (row k is sample idx[k]) to *loss and *correct.
func (l Loss) score(t *targets, out []float64, idx []int, loss, correct *float64) {
	w := t.width
	for k, i := range idx {
		z := out[k*w : (k+1)*w]
		switch l.kind {
		case lossCE:
			mx := math.Inf(-1)
			arg := 0
			for j, v := range z {
				if v > mx {
					mx, arg = v, j
				}
			}
			var se float64
			for _, v := range z {
				se += math.Exp(v - mx)
			}
			lse := mx + math.Log(se)
			if t.labels != nil {
				*loss += lse - z[t.labels[i]]
				if arg == t.labels[i] {
					*correct++
				}
				continue
			}
			row := t.rows[i*w : (i+1)*w]
			best := 0
			for j, p := range row {
				*loss -= p * (z[j] - lse)
				if p > row[best] {
					best = j
				}
			}
			if arg == best {
				*correct++
			}
		case lossMSE:
			var s float64
			for j, v := range z {
				d := v - t.rows[i*w+j]
				s += d * d
			}
			*loss += s / float64(w)
		case lossBCE:
			var s, c float64
			for j, v := range z {
				y := t.rows[i*w+j]
				// softplus(v) − y·v, stably
				s += math.Max(v, 0) + math.Log1p(math.Exp(-math.Abs(v))) - y*v
				if (v > 0) == (y > 0.5) {
					c++
				}
			}
			*loss += s / float64(w)
			*correct += c / float64(w)
		}
	}
}
