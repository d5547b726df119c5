// Reductions along axes, and softmax and its gradient along the last
// axis. One thread per output element (per row for softmax), summing in
// index order, as exec/cuda/ref.go does.
#include "ops.h"

// reduce: y[i] (+)= scale·reduce over j of x[base(i) + offset(j)], where i
// runs over dims (n/(o1·o2·o3), o1, o2, o3) and j over (r0, r1, r2, r3).
template <typename T>
__device__ void reduce(int op, int n, int acc, T scale, int o1, int o2, int o3, int r0, int r1, int r2, int r3,
                       int xs0, int xs1, int xs2, int xs3, const T *x, T *y) {
	long long rn = (long long)r0 * r1 * r2 * r3;
	GRID_LOOP(i, n) {
		int i0, i1, i2, i3;
		index4(i, o1, o2, o3, &i0, &i1, &i2, &i3);
		long long b = (long long)i0 * xs0 + (long long)i1 * xs1 + (long long)i2 * xs2 + (long long)i3 * xs3;
		T s = op == R_MAX ? lowest<T>() : T(0);
		double s64 = 0;
		for (long long j = 0; j < rn; j++) {
			int j0, j1, j2, j3;
			index4(j, r1, r2, r3, &j0, &j1, &j2, &j3);
			T v = x[b + (long long)j0 * xs0 + (long long)j1 * xs1 + (long long)j2 * xs2 + (long long)j3 * xs3];
			if (op == R_SUM) {
				s += v;
			} else if (op == R_MAX) {
				if (v > s) s = v;
			} else {
				s64 += (double)v * (double)v;
			}
		}
		if (op == R_SUM_SQUARES) s = (T)s64;
		put(y, i, acc, scale * s);
	}
}

// softmax along rows of cols elements; log selects log-softmax.
template <typename T> __device__ void softmax(int rows, int cols, int lg, const T *x, T *y) {
	GRID_LOOP(r, rows) {
		const T *xr = x + r * (long long)cols;
		T *yr = y + r * (long long)cols;
		T m = xr[0];
		for (int j = 1; j < cols; j++)
			if (xr[j] > m) m = xr[j];
		T s = 0;
		for (int j = 0; j < cols; j++) s += exp(xr[j] - m);
		for (int j = 0; j < cols; j++) yr[j] = lg ? xr[j] - m - log(s) : exp(xr[j] - m) / s;
	}
}

// softmax_grad: dx (+)= y·(dy − Σdy·y), or for log-softmax dy − exp(y)·Σdy.
template <typename T> __device__ void softmax_grad(int rows, int cols, int lg, int acc, const T *y, const T *dy, T *dx) {
	GRID_LOOP(r, rows) {
		long long o = r * (long long)cols;
		T s = 0;
		for (int j = 0; j < cols; j++) s += lg ? dy[o + j] : dy[o + j] * y[o + j];
		for (int j = 0; j < cols; j++) {
			T v = lg ? dy[o + j] - exp(y[o + j]) * s : y[o + j] * (dy[o + j] - s);
			put(dx, o + j, acc, v);
		}
	}
}

#define ENTRY_REDUCE(T, S) \
	extern "C" __global__ void reduce_##S(int op, int n, int acc, T scale, int o1, int o2, int o3, int r0, \
	                                      int r1, int r2, int r3, int xs0, int xs1, int xs2, int xs3, const T *x, \
	                                      T *y) { \
		reduce<T>(op, n, acc, scale, o1, o2, o3, r0, r1, r2, r3, xs0, xs1, xs2, xs3, x, y); \
	}
#define ENTRY_SOFTMAX(T, S) \
	extern "C" __global__ void softmax_##S(int rows, int cols, int lg, const T *x, T *y) { \
		softmax<T>(rows, cols, lg, x, y); \
	} \
	extern "C" __global__ void softmax_grad_##S(int rows, int cols, int lg, int acc, const T *y, const T *dy, \
	                                            T *dx) { \
		softmax_grad<T>(rows, cols, lg, acc, y, dy, dx); \
	}

ENTRY_REDUCE(float, f32)
ENTRY_REDUCE(double, f64)
ENTRY_SOFTMAX(float, f32)
ENTRY_SOFTMAX(double, f64)
