package ravml

// Criterion is the impurity a decision tree minimises.
type Criterion uint8

// Criteria.
const (
	Gini Criterion = iota
	Entropy
	MSE
)
