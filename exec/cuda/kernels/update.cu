// The solver update of one parameter: SGD, SGD with momentum, Nesterov,
// Adam (and AdamW through decay), RMSProp, with gradient scaling, value
// clipping and L2 weight decay, in the order exec.Solver applies them.
#include "ops.h"

template <typename T>
__device__ void update(int op, int n, T lr, T scale, T wd, T decay, T mu, T b1, T b2, T c1, T c2, T eps, T clip, T *p,
                       const T *g, T *s0, T *s1) {
	GRID_LOOP(i, n) {
		T gi = g[i] * scale;
		if (clip > 0) gi = max(-clip, min(clip, gi));
		if (wd != 0) gi += wd * p[i];
		switch (op) {
		case S_SGD:
			p[i] -= lr * gi;
			break;
		case S_MOMENTUM:
			s0[i] = mu * s0[i] + gi;
			p[i] -= lr * s0[i];
			break;
		case S_NESTEROV:
			s0[i] = mu * s0[i] + gi;
			p[i] -= lr * (gi + mu * s0[i]);
			break;
		case S_ADAM: {
			p[i] *= decay;
			s0[i] = b1 * s0[i] + (T(1) - b1) * gi;
			s1[i] = b2 * s1[i] + (T(1) - b2) * gi * gi;
			T mh = s0[i] / c1;
			T vh = s1[i] / c2;
			p[i] -= lr * mh / (sqrt(vh) + eps);
			break;
		}
		case S_RMSPROP:
			s0[i] = mu * s0[i] + (T(1) - mu) * gi * gi;
			p[i] -= lr * gi / (sqrt(s0[i]) + eps);
			break;
		}
	}
}

#define ENTRY_UPDATE(T, S) \
	extern "C" __global__ void update_##S(int op, int n, T lr, T scale, T wd, T decay, T mu, T b1, T b2, T c1, \
	                                      T c2, T eps, T clip, T *p, const T *g, T *s0, T *s1) { \
		update<T>(op, n, lr, scale, wd, decay, mu, b1, b2, c1, c2, eps, clip, p, g, s0, s1); \
	}

ENTRY_UPDATE(float, f32)
ENTRY_UPDATE(double, f64)
