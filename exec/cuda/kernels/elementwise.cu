// Elementwise kernels: unary and binary ops over operands read with
// strides (broadcasting, transposition), their gradients, and fill.
// exec/cuda/ref.go mirrors each of them in Go.
#include "ops.h"

template <typename T> __device__ T sign_of(T x) { return x > 0 ? T(1) : (x < 0 ? T(-1) : T(0)); }

template <typename T> __device__ T unary_f(int op, T x) {
	switch (op) {
	case U_COPY: return x;
	case U_NEG: return -x;
	case U_ABS: return fabs(x);
	case U_SIGN: return sign_of(x);
	case U_CEIL: return ceil(x);
	case U_FLOOR: return floor(x);
	case U_SIN: return sin(x);
	case U_COS: return cos(x);
	case U_EXP: return exp(x);
	case U_LOG: return log(x);
	case U_LOG2: return log2(x);
	case U_SQUARE: return x * x;
	case U_SQRT: return sqrt(x);
	case U_INVERSE: return T(1) / x;
	case U_INVERSE_SQRT: return T(1) / sqrt(x);
	case U_CUBE: return x * x * x;
	case U_TANH: return tanh(x);
	case U_SIGMOID: return T(1) / (T(1) + exp(-x));
	case U_LOG1P: return log1p(x);
	case U_EXPM1: return expm1(x);
	case U_SOFTPLUS: return x > T(20) ? x : log1p(exp(x));
	}
	return T(0) / T(0);
}

template <typename T> __device__ T unary_grad_f(int op, T x, T y, T dy) {
	switch (op) {
	case U_COPY: return dy;
	case U_NEG: return -dy;
	case U_ABS: return dy * sign_of(x);
	case U_SIN: return dy * cos(x);
	case U_COS: return -dy * sin(x);
	case U_EXP: return dy * y;
	case U_LOG: return dy / x;
	case U_LOG2: return dy / (x * T(0.693147180559945309417232121458176568));
	case U_SQUARE: return dy * T(2) * x;
	case U_SQRT: return dy / (T(2) * y);
	case U_INVERSE: return -dy * y * y;
	case U_INVERSE_SQRT: return -dy * y * y * y / T(2);
	case U_CUBE: return dy * T(3) * x * x;
	case U_TANH: return dy * (T(1) - y * y);
	case U_SIGMOID: return dy * y * (T(1) - y);
	case U_LOG1P: return dy / (T(1) + x);
	case U_EXPM1: return dy * (y + T(1));
	case U_SOFTPLUS: return dy / (T(1) + exp(-x));
	}
	return T(0); // sign, ceil, floor
}

template <typename T> __device__ T binary_f(int op, T a, T b) {
	switch (op) {
	case B_ADD: return a + b;
	case B_SUB: return a - b;
	case B_MUL: return a * b;
	case B_DIV: return a / b;
	case B_POW: return pow(a, b);
	case B_LT: return a < b ? T(1) : T(0);
	case B_GT: return a > b ? T(1) : T(0);
	case B_LTE: return a <= b ? T(1) : T(0);
	case B_GTE: return a >= b ? T(1) : T(0);
	case B_EQ: return a == b ? T(1) : T(0);
	case B_NE: return a != b ? T(1) : T(0);
	case B_POW_GRAD_A: return b * pow(a, b - T(1));
	case B_POW_GRAD_B: return pow(a, b) * log(a);
	}
	return T(0) / T(0);
}

// unary: y[i] (+)= f(x[strided i]) over dims (n/(d1·d2·d3), d1, d2, d3).
template <typename T>
__device__ void unary(int op, int n, int acc, int d1, int d2, int d3, int xs0, int xs1, int xs2, int xs3,
                      const T *x, T *y) {
	GRID_LOOP(i, n) {
		int i0, i1, i2, i3;
		index4(i, d1, d2, d3, &i0, &i1, &i2, &i3);
		long long xi = (long long)i0 * xs0 + (long long)i1 * xs1 + (long long)i2 * xs2 + (long long)i3 * xs3;
		put(y, i, acc, unary_f(op, x[xi]));
	}
}

// unary_grad: dx[i] (+)= dy[i]·f'(x[i]), with y = f(x).
template <typename T>
__device__ void unary_grad(int op, int n, int acc, const T *x, const T *y, const T *dy, T *dx) {
	GRID_LOOP(i, n) { put(dx, i, acc, unary_grad_f(op, x[i], y[i], dy[i])); }
}

// binary: z[i] (+)= f(a[strided i], b[strided i]).
template <typename T>
__device__ void binary(int op, int n, int acc, int d1, int d2, int d3, int as0, int as1, int as2, int as3,
                       int bs0, int bs1, int bs2, int bs3, const T *a, const T *b, T *z) {
	GRID_LOOP(i, n) {
		int i0, i1, i2, i3;
		index4(i, d1, d2, d3, &i0, &i1, &i2, &i3);
		long long ai = (long long)i0 * as0 + (long long)i1 * as1 + (long long)i2 * as2 + (long long)i3 * as3;
		long long bi = (long long)i0 * bs0 + (long long)i1 * bs1 + (long long)i2 * bs2 + (long long)i3 * bs3;
		put(z, i, acc, binary_f(op, a[ai], b[bi]));
	}
}

// scatter: y[strided i] (+)= x[strided i], each over dims (., d1, d2, d3):
// copies into a region of a larger tensor (concat, the gradient of a slice).
template <typename T>
__device__ void scatter(int n, int acc, int d1, int d2, int d3, int xs0, int xs1, int xs2, int xs3, int ys0, int ys1,
                        int ys2, int ys3, const T *x, T *y) {
	GRID_LOOP(i, n) {
		int i0, i1, i2, i3;
		index4(i, d1, d2, d3, &i0, &i1, &i2, &i3);
		long long xi = (long long)i0 * xs0 + (long long)i1 * xs1 + (long long)i2 * xs2 + (long long)i3 * xs3;
		long long yi = (long long)i0 * ys0 + (long long)i1 * ys1 + (long long)i2 * ys2 + (long long)i3 * ys3;
		put(y, yi, acc, x[xi]);
	}
}

template <typename T> __device__ void fill(int n, T v, T *y) {
	GRID_LOOP(i, n) { y[i] = v; }
}

#define ENTRY_UNARY(T, S) \
	extern "C" __global__ void unary_##S(int op, int n, int acc, int d1, int d2, int d3, int xs0, int xs1, \
	                                     int xs2, int xs3, const T *x, T *y) { \
		unary<T>(op, n, acc, d1, d2, d3, xs0, xs1, xs2, xs3, x, y); \
	}
#define ENTRY_UNARY_GRAD(T, S) \
	extern "C" __global__ void unary_grad_##S(int op, int n, int acc, const T *x, const T *y, const T *dy, \
	                                          T *dx) { \
		unary_grad<T>(op, n, acc, x, y, dy, dx); \
	}
#define ENTRY_BINARY(T, S) \
	extern "C" __global__ void binary_##S(int op, int n, int acc, int d1, int d2, int d3, int as0, int as1, \
	                                      int as2, int as3, int bs0, int bs1, int bs2, int bs3, const T *a, \
	                                      const T *b, T *z) { \
		binary<T>(op, n, acc, d1, d2, d3, as0, as1, as2, as3, bs0, bs1, bs2, bs3, a, b, z); \
	}
#define ENTRY_SCATTER(T, S) \
	extern "C" __global__ void scatter_##S(int n, int acc, int d1, int d2, int d3, int xs0, int xs1, int xs2, \
	                                       int xs3, int ys0, int ys1, int ys2, int ys3, const T *x, T *y) { \
		scatter<T>(n, acc, d1, d2, d3, xs0, xs1, xs2, xs3, ys0, ys1, ys2, ys3, x, y); \
	}
#define ENTRY_FILL(T, S) \
	extern "C" __global__ void fill_##S(int n, T v, T *y) { fill<T>(n, v, y); }

ENTRY_UNARY(float, f32)
ENTRY_UNARY(double, f64)
ENTRY_UNARY_GRAD(float, f32)
ENTRY_UNARY_GRAD(double, f64)
ENTRY_BINARY(float, f32)
ENTRY_BINARY(double, f64)
ENTRY_SCATTER(float, f32)
ENTRY_SCATTER(double, f64)
ENTRY_FILL(float, f32)
ENTRY_FILL(double, f64)
