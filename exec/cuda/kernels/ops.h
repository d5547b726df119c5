// Op codes and helpers shared by the Rookery CUDA kernels. The op codes
// must match exec/cuda/kernels.go; a Go test reads this file and checks.
#pragma once

#define U_COPY 0
#define U_NEG 1
#define U_ABS 2
#define U_SIGN 3
#define U_CEIL 4
#define U_FLOOR 5
#define U_SIN 6
#define U_COS 7
#define U_EXP 8
#define U_LOG 9
#define U_LOG2 10
#define U_SQUARE 11
#define U_SQRT 12
#define U_INVERSE 13
#define U_INVERSE_SQRT 14
#define U_CUBE 15
#define U_TANH 16
#define U_SIGMOID 17
#define U_LOG1P 18
#define U_EXPM1 19
#define U_SOFTPLUS 20

#define B_ADD 0
#define B_SUB 1
#define B_MUL 2
#define B_DIV 3
#define B_POW 4
#define B_LT 5
#define B_GT 6
#define B_LTE 7
#define B_GTE 8
#define B_EQ 9
#define B_NE 10
#define B_POW_GRAD_A 11
#define B_POW_GRAD_B 12

#define R_SUM 0
#define R_MAX 1
#define R_SUM_SQUARES 2

#define S_SGD 0
#define S_MOMENTUM 1
#define S_NESTEROV 2
#define S_ADAM 3
#define S_RMSPROP 4

// Every kernel loops with the grid's stride, so any launch size covers n.
#define GRID_LOOP(i, n) \
	for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)(n); \
	     i += (long long)blockDim.x * gridDim.x)

template <typename T> __device__ __forceinline__ T lowest();
template <> __device__ __forceinline__ float lowest<float>() { return -3.40282346638528859811704183484516925440e+38f; }
template <> __device__ __forceinline__ double lowest<double>() { return -1.797693134862315708145274237317043567981e+308; }

template <typename T> __device__ __forceinline__ void put(T *y, long long i, int acc, T v) {
	if (acc) {
		y[i] += v;
	} else {
		y[i] = v;
	}
}

// index4 splits a flat index over dims (., d1, d2, d3).
__device__ __forceinline__ void index4(long long i, int d1, int d2, int d3, int *i0, int *i1, int *i2, int *i3) {
	*i3 = (int)(i % d3);
	long long t = i / d3;
	*i2 = (int)(t % d2);
	t /= d2;
	*i1 = (int)(t % d1);
	*i0 = (int)(t / d1);
}
