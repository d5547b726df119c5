// Convolution and pooling kernels: im2col and its gradient col2im, max
// pooling and its gradient. Gradients gather (one thread per input
// element) rather than scatter, so they need no atomics and sum in a
// fixed order, as exec/cuda/ref.go does.
#include "ops.h"

// im2col: col (b, oh, ow, c·kh·kw) from x (b, c, h, w); zero outside x.
template <typename T>
__device__ void im2col(int n, int c, int h, int w, int oh, int ow, int kh, int kw, int ph, int pw, int sh, int sw,
                       int dh, int dw, const T *x, T *col) {
	GRID_LOOP(i, n) {
		int kj = (int)(i % kw);
		long long t = i / kw;
		int ki = (int)(t % kh);
		t /= kh;
		int ch = (int)(t % c);
		t /= c;
		int ox = (int)(t % ow);
		t /= ow;
		int oy = (int)(t % oh);
		long long b = t / oh;
		int iy = oy * sh - ph + ki * dh, ix = ox * sw - pw + kj * dw;
		T v = 0;
		if (iy >= 0 && iy < h && ix >= 0 && ix < w) v = x[((b * c + ch) * h + iy) * w + ix];
		col[i] = v;
	}
}

// col2im: dx (b, c, h, w) (+)= the sum of the col entries that read each x.
template <typename T>
__device__ void col2im(int n, int acc, int c, int h, int w, int oh, int ow, int kh, int kw, int ph, int pw, int sh,
                       int sw, int dh, int dw, const T *col, T *dx) {
	GRID_LOOP(i, n) {
		int ix = (int)(i % w);
		long long t = i / w;
		int iy = (int)(t % h);
		t /= h;
		int ch = (int)(t % c);
		long long b = t / c;
		T s = 0;
		for (int ki = 0; ki < kh; ki++) {
			int ty = iy + ph - ki * dh;
			if (ty < 0 || ty % sh != 0 || ty / sh >= oh) continue;
			int oy = ty / sh;
			for (int kj = 0; kj < kw; kj++) {
				int tx = ix + pw - kj * dw;
				if (tx < 0 || tx % sw != 0 || tx / sw >= ow) continue;
				int ox = tx / sw;
				s += col[(((b * oh + oy) * ow + ox) * c + ch) * (long long)(kh * kw) + ki * kw + kj];
			}
		}
		put(dx, i, acc, s);
	}
}

// maxpool: y (b, c, oh, ow) is the max over each window, clipped to x.
template <typename T>
__device__ void maxpool(int n, int c, int h, int w, int oh, int ow, int kh, int kw, int ph, int pw, int sh, int sw,
                        const T *x, T *y) {
	GRID_LOOP(i, n) {
		int ox = (int)(i % ow);
		long long t = i / ow;
		int oy = (int)(t % oh);
		long long bc = t / oh;
		int hs = oy * sh - ph, ws = ox * sw - pw;
		int he = min(hs + kh, h), we = min(ws + kw, w);
		hs = max(hs, 0);
		ws = max(ws, 0);
		T m = lowest<T>();
		for (int hi = hs; hi < he; hi++)
			for (int wi = ws; wi < we; wi++) {
				T v = x[bc * h * w + hi * w + wi];
				if (v > m) m = v;
			}
		y[i] = m;
	}
}

// maxpool_grad: dx (+)= the dy of every window whose first maximum is
// this element.
template <typename T>
__device__ void maxpool_grad(int n, int acc, int c, int h, int w, int oh, int ow, int kh, int kw, int ph, int pw,
                             int sh, int sw, const T *x, const T *y, const T *dy, T *dx) {
	GRID_LOOP(i, n) {
		int ix = (int)(i % w);
		long long t = i / w;
		int iy = (int)(t % h);
		long long bc = t / h;
		T s = 0;
		int oy0 = 0, ox0 = 0;
		int lo = iy + ph - kh + 1;
		if (lo > 0) oy0 = (lo + sh - 1) / sh;
		lo = ix + pw - kw + 1;
		if (lo > 0) ox0 = (lo + sw - 1) / sw;
		for (int oy = oy0; oy < oh && oy * sh - ph <= iy; oy++)
			for (int ox = ox0; ox < ow && ox * sw - pw <= ix; ox++) {
				int hs = oy * sh - ph, ws = ox * sw - pw;
				int he = min(hs + kh, h), we = min(ws + kw, w);
				hs = max(hs, 0);
				ws = max(ws, 0);
				T m = lowest<T>();
				int arg = -1;
				for (int hi = hs; hi < he; hi++)
					for (int wi = ws; wi < we; wi++) {
						T v = x[bc * h * w + hi * w + wi];
						if (v > m) {
							m = v;
							arg = hi * w + wi;
						}
					}
				if (arg == iy * w + ix) s += dy[(bc * oh + oy) * ow + ox];
			}
		put(dx, i, acc, s);
	}
}

#define ENTRY_NN(T, S) \
	extern "C" __global__ void im2col_##S(int n, int c, int h, int w, int oh, int ow, int kh, int kw, int ph, \
	                                      int pw, int sh, int sw, int dh, int dw, const T *x, T *col) { \
		im2col<T>(n, c, h, w, oh, ow, kh, kw, ph, pw, sh, sw, dh, dw, x, col); \
	} \
	extern "C" __global__ void col2im_##S(int n, int acc, int c, int h, int w, int oh, int ow, int kh, int kw, \
	                                      int ph, int pw, int sh, int sw, int dh, int dw, const T *col, T *dx) { \
		col2im<T>(n, acc, c, h, w, oh, ow, kh, kw, ph, pw, sh, sw, dh, dw, col, dx); \
	} \
	extern "C" __global__ void maxpool_##S(int n, int c, int h, int w, int oh, int ow, int kh, int kw, int ph, \
	                                       int pw, int sh, int sw, const T *x, T *y) { \
		maxpool<T>(n, c, h, w, oh, ow, kh, kw, ph, pw, sh, sw, x, y); \
	} \
	extern "C" __global__ void maxpool_grad_##S(int n, int acc, int c, int h, int w, int oh, int ow, int kh, \
	                                            int kw, int ph, int pw, int sh, int sw, const T *x, const T *y, \
	                                            const T *dy, T *dx) { \
		maxpool_grad<T>(n, acc, c, h, w, oh, ow, kh, kw, ph, pw, sh, sw, x, y, dy, dx); \
	}

ENTRY_NN(float, f32)
ENTRY_NN(double, f64)
