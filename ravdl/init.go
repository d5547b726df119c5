package ravdl

import (
	"math"
	"math/rand"
)

// Initializer fills a new parameter. fanIn and fanOut are the numbers of
// inputs and outputs of one unit (for Conv2D: channels × kernel area).
// Initialisers draw from the model's seeded source only, so the same
// seed gives the same weights.
type Initializer interface {
	Fill(rng *rand.Rand, w []float64, fanIn, fanOut int)
}

type initFunc func(rng *rand.Rand, w []float64, fanIn, fanOut int)

func (f initFunc) Fill(rng *rand.Rand, w []float64, fanIn, fanOut int) { f(rng, w, fanIn, fanOut) }

// GlorotUniform draws from U(−a, a) with a = √(6 / (fanIn + fanOut)).
func GlorotUniform() Initializer {
	return initFunc(func(rng *rand.Rand, w []float64, fanIn, fanOut int) {
		a := math.Sqrt(6 / float64(fanIn+fanOut))
		for i := range w {
			w[i] = (2*rng.Float64() - 1) * a
		}
	})
}

// GlorotNormal draws from N(0, 2 / (fanIn + fanOut)).
func GlorotNormal() Initializer {
	return initFunc(func(rng *rand.Rand, w []float64, fanIn, fanOut int) {
		s := math.Sqrt(2 / float64(fanIn+fanOut))
		for i := range w {
			w[i] = rng.NormFloat64() * s
		}
	})
}

// HeUniform draws from U(−a, a) with a = √(6 / fanIn), for ReLU layers.
func HeUniform() Initializer {
	return initFunc(func(rng *rand.Rand, w []float64, fanIn, fanOut int) {
		a := math.Sqrt(6 / float64(fanIn))
		for i := range w {
			w[i] = (2*rng.Float64() - 1) * a
		}
	})
}

// HeNormal draws from N(0, 2 / fanIn), for ReLU layers.
func HeNormal() Initializer {
	return initFunc(func(rng *rand.Rand, w []float64, fanIn, fanOut int) {
		s := math.Sqrt(2 / float64(fanIn))
		for i := range w {
			w[i] = rng.NormFloat64() * s
		}
	})
}

// Zeros fills with 0.
func Zeros() Initializer { return Constant(0) }

// Constant fills with v.
func Constant(v float64) Initializer {
	return initFunc(func(_ *rand.Rand, w []float64, _, _ int) {
		for i := range w {
			w[i] = v
		}
	})
}
