// Package kernels holds the compute kernels of the IR's op kinds that
// Gorgonia has no op for (graph's top_k, argmin, one_hot, take,
// tree_route, histogram, segment_sum, gather_rows, group_rows,
// log_softmax_rows and matmul_top_k), as plain functions over row-major
// slices of float32 or float64.
//
// The CPU executor runs them through a Gorgonia op of package exec, which
// hands each kernel its inputs' data and an output slice of the shape the
// graph package infers; a requester may call them directly to compute on
// its side (a reduction, a prediction) what a provider computes in a
// graph. Every index a kernel reads or writes is carried as a float of the
// data's dtype, exact up to 2⁵³ (float64) or 2²⁴ (float32).
//
// The kernels allocate only scratch memory, bounded by their arguments.
// MatMulTopK computes its matrix product with the BLAS it is given (the
// CPU executor passes the one its build installs for Gorgonia) and
// searches large products on GOMAXPROCS goroutines, which end before it
// returns; the other kernels are single loops.
//
// Error policy: a kernel trusts the sizes it is given (the graph package
// has checked the shapes); out-of-range indexes in the data are treated as
// each kernel's documentation says, never as a panic. TreeRoute, whose
// tree arrives as data, returns an error for a tree it cannot walk.
package kernels
