package ravdl_test

import (
	"context"
	"fmt"

	"github.com/rookery-ml/rookery/ravdl"
)

// Train a small classifier on the iris flowers across two in-process
// executors and score it on held-out rows.
func Example() {
	x, y, err := ravdl.LoadCSV("testdata/iris.csv", "label")
	if err != nil {
		fmt.Println(err)
		return
	}
	xTrain, yTrain, xTest, yTest, _ := ravdl.Split(x, y, func(i int) bool { return i%5 == 4 })

	model := ravdl.Sequential(
		ravdl.Dense(16), ravdl.Tanh(),
		ravdl.Dense(3),
	)
	hist, err := model.Fit(context.Background(), xTrain, yTrain,
		ravdl.Epochs(60), ravdl.BatchSize(8), ravdl.Seed(1),
		ravdl.WithOptimizer(ravdl.Adam(0.01)),
		ravdl.Parts(2), ravdl.Quiet())
	if err != nil {
		fmt.Println(err)
		return
	}
	_, acc, err := model.Evaluate(context.Background(), xTest, yTest)
	if err != nil {
		fmt.Println(err)
		return
	}
	first, last := hist.Epochs[0], hist.Epochs[len(hist.Epochs)-1]
	fmt.Println("parts:", hist.Parts)
	fmt.Println("loss fell:", last.Loss < first.Loss/4)
	fmt.Println("test accuracy at least 90%:", acc >= 0.9)
	// Output:
	// parts: 2
	// loss fell: true
	// test accuracy at least 90%: true
}
