// Package bench holds Rookery's step benchmarks: one training step of a
// 784-1024-1024-10 float32 MLP on a batch of 256, (a) in plain Gorgonia,
// (b) through a Trainer with one part and (c) with two parts and four
// micro-batches. Run them with
//
//	go test ./bench -run '^$' -bench . -benchtime 20x -count 5
//
// and compare with benchstat.
package bench
