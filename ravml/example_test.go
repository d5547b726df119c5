package ravml_test

import (
	"context"
	"fmt"

	"github.com/rookery-ml/rookery/ravml"
)

// Nearest neighbours on iris, the rows split over two in-process
// executors (the default).
func Example() {
	ctx := context.Background()
	X, y, _, err := ravml.LoadCSV("testdata/iris.csv")
	if err != nil {
		panic(err)
	}
	trX, trY, teX, teY, err := ravml.SplitEvery(X, y, 5, 4)
	if err != nil {
		panic(err)
	}
	knn := ravml.NewKNNClassifier(5)
	defer knn.Close()
	if err := knn.Fit(ctx, trX, trY); err != nil {
		panic(err)
	}
	acc, err := knn.Score(ctx, teX, teY)
	if err != nil {
		panic(err)
	}
	fmt.Printf("KNN(5) test accuracy: %.3f\n", acc)
	// Output: KNN(5) test accuracy: 0.967
}

func ExampleKMeans() {
	ctx := context.Background()
	X, y, _, err := ravml.LoadCSV("testdata/iris.csv")
	if err != nil {
		panic(err)
	}
	km := ravml.NewKMeans(3, ravml.Shards(4), ravml.Seed(1))
	if err := km.Fit(ctx, X, nil); err != nil {
		panic(err)
	}
	ari, err := km.Score(ctx, X, y)
	if err != nil {
		panic(err)
	}
	fmt.Printf("adjusted Rand index: %.3f\n", ari)
	// Output: adjusted Rand index: 0.730
}

func ExampleLinearRegression() {
	ctx := context.Background()
	X, y, _, err := ravml.LoadCSV("testdata/diabetes.csv")
	if err != nil {
		panic(err)
	}
	trX, trY, teX, teY, err := ravml.SplitEvery(X, y, 5, 4)
	if err != nil {
		panic(err)
	}
	lr := ravml.NewLinearRegression(ravml.Shards(3))
	if err := lr.Fit(ctx, trX, trY); err != nil {
		panic(err)
	}
	r2, err := lr.Score(ctx, teX, teY)
	if err != nil {
		panic(err)
	}
	fmt.Printf("R²: %.4f\n", r2)
	// Output: R²: 0.4475
}
