// Fused RA scoring kernels: SSIM from separable local moments, separable Gaussian,
// residual, product, mask and per-image reduction; and the feature-distance map.
// Filters follow scipy.ndimage: each 1-D pass accumulates in float64 and stores float32,
// axis H first, border mode 'reflect' (half-sample symmetric). Compile with --fmad=false
// so that the float32 formulae round exactly as numpy's element-wise operations do.
#include "ra_math.cuh"

// Filter weights come in as a device array c_w of 2r+1 float64 taps (not __constant__
// memory, which would be shared by concurrent streams).

// Vertical pass of the five SSIM moments (a, b, a*a, b*b, a*b) of N image pairs.
// grid: ceil(N*H*W / 256); mom: (5, N, H, W).
extern "C" __global__ void ssim_moments_v(const double* __restrict__ c_w, const float* __restrict__ a, const float* __restrict__ b, int N, int H, int W,
                               int r, float* __restrict__ mom) {
  const long long hw = static_cast<long long>(H) * W, total = N * hw;
  const long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= total) return;
  const long long n = idx / hw;
  const int y = static_cast<int>((idx % hw) / W), x = static_cast<int>(idx % W);
  const float* an = a + n * hw;
  const float* bn = b + n * hw;
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0;
  for (int k = -r; k <= r; ++k) {
    const long long j = static_cast<long long>(ra::symmetric_index(y + k, H)) * W + x;
    const float va = an[j], vb = bn[j];
    const double w = c_w[k + r];
    s0 += w * va;
    s1 += w * vb;
    s2 += w * static_cast<double>(va * va);
    s3 += w * static_cast<double>(vb * vb);
    s4 += w * static_cast<double>(va * vb);
  }
  mom[idx] = static_cast<float>(s0);
  mom[total + idx] = static_cast<float>(s1);
  mom[2 * total + idx] = static_cast<float>(s2);
  mom[3 * total + idx] = static_cast<float>(s3);
  mom[4 * total + idx] = static_cast<float>(s4);
}

// Horizontal pass of the moments and the SSIM formula of skimage (float32, its order).
// out = 1 - S when one_minus, else S. grid: ceil(N*H*W / 256).
extern "C" __global__ void ssim_map_h(const double* __restrict__ c_w, const float* __restrict__ mom, int N, int H, int W, int r, float cov_norm, float c1,
                           float c2, int one_minus, float* __restrict__ out) {
  const long long hw = static_cast<long long>(H) * W, total = N * hw;
  const long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= total) return;
  const long long row = idx - idx % W;
  const int x = static_cast<int>(idx % W);
  double s[5] = {0, 0, 0, 0, 0};
  for (int k = -r; k <= r; ++k) {
    const long long j = row + ra::symmetric_index(x + k, W);
    const double w = c_w[k + r];
#pragma unroll
    for (int m = 0; m < 5; ++m) s[m] += w * mom[m * total + j];
  }
  const float ux = static_cast<float>(s[0]), uy = static_cast<float>(s[1]);
  const float uxx = static_cast<float>(s[2]), uyy = static_cast<float>(s[3]), uxy = static_cast<float>(s[4]);
  const float vx = cov_norm * (uxx - ux * ux);
  const float vy = cov_norm * (uyy - uy * uy);
  const float vxy = cov_norm * (uxy - ux * uy);
  const float a1 = 2.f * ux * uy + c1;
  const float a2 = 2.f * vxy + c2;
  const float b1 = ux * ux + uy * uy + c1;
  const float b2 = vx + vy + c2;
  const float S = (a1 * a2) / (b1 * b2);
  out[idx] = one_minus ? 1.f - S : S;
}

// Vertical pass of a separable filter over N images (weights in c_w, radius r).
extern "C" __global__ void sep_filter_v(const double* __restrict__ c_w, const float* __restrict__ in, int N, int H, int W, int r, float* __restrict__ out) {
  const long long hw = static_cast<long long>(H) * W;
  const long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= N * hw) return;
  const long long base = idx - idx % hw;
  const int y = static_cast<int>((idx % hw) / W), x = static_cast<int>(idx % W);
  double s = 0;
  for (int k = -r; k <= r; ++k) s += c_w[k + r] * in[base + static_cast<long long>(ra::symmetric_index(y + k, H)) * W + x];
  out[idx] = static_cast<float>(s);
}

// Horizontal pass of a separable filter over N images.
extern "C" __global__ void sep_filter_h(const double* __restrict__ c_w, const float* __restrict__ in, int N, int H, int W, int r, float* __restrict__ out) {
  const long long hw = static_cast<long long>(H) * W;
  const long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= N * hw) return;
  const long long row = idx - idx % W;
  const int x = static_cast<int>(idx % W);
  double s = 0;
  for (int k = -r; k <= r; ++k) s += c_w[k + r] * in[row + ra::symmetric_index(x + k, W)];
  out[idx] = static_cast<float>(s);
}

// The last stage of the fused score. pv: (2, B, H, W) perceptual maps after the vertical
// Gaussian pass; this pass blurs them horizontally, multiplies them, and multiplies by the
// residual |cp - cx| and the optional mask: A = |cp - cx| * (G1 * G2) [* mask].
// Per image: sum (float64) and max of A. grid: ceil(B*H*W / 256).
extern "C" __global__ void score_combine_h(const double* __restrict__ c_w, const float* __restrict__ pv, const float* __restrict__ cp,
                                const float* __restrict__ cx, const float* __restrict__ mask, int B, int H,
                                int W, int r, float* __restrict__ amap, double* __restrict__ sums,
                                unsigned int* __restrict__ maxs) {
  const long long hw = static_cast<long long>(H) * W, total = B * hw;
  const long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  float a = 0.f;
  int b = -1;
  if (idx < total) {
    b = static_cast<int>(idx / hw);
    const long long row = idx - idx % W;
    const int x = static_cast<int>(idx % W);
    double g1 = 0, g2 = 0;
    for (int k = -r; k <= r; ++k) {
      const long long j = row + ra::symmetric_index(x + k, W);
      g1 += c_w[k + r] * pv[j];
      g2 += c_w[k + r] * pv[total + j];
    }
    const float s = static_cast<float>(g1) * static_cast<float>(g2);
    a = fabsf(cp[idx] - cx[idx]) * s;
    if (mask != nullptr) a = a * mask[idx];
    amap[idx] = a;
  }
  // Reduce within the warp when every lane holds the same image (the usual case).
  const unsigned full = 0xffffffffu;
  const int b0 = __shfl_sync(full, b, 0);
  const bool same = __all_sync(full, b == b0);
  if (same) {
    double s = a;
    float m = a;
    for (int off = 16; off > 0; off >>= 1) {
      s += __shfl_xor_sync(full, s, off);
      m = fmaxf(m, __shfl_xor_sync(full, m, off));
    }
    if ((threadIdx.x & 31) == 0 && b0 >= 0) {
      atomicAdd(&sums[b0], s);
      atomicMax(&maxs[b0], __float_as_uint(m));  // a >= 0: float order == uint order
    }
  } else if (b >= 0) {
    atomicAdd(&sums[b], static_cast<double>(a));
    atomicMax(&maxs[b], __float_as_uint(a));
  }
}

// Feature distance at one level: per pixel, unit-normalise over channels (eps), squared
// difference, channel weights (nullptr = ones), channel sum. f*: (N, C, h*w); d: (N, h*w).
extern "C" __global__ void feature_level_distance(const float* __restrict__ fa, const float* __restrict__ fb,
                                       const float* __restrict__ w, int N, int C, long long hw, float eps,
                                       float* __restrict__ d) {
  const long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= N * hw) return;
  const long long n = idx / hw, p = idx % hw;
  const float* a = fa + n * C * hw + p;
  const float* b = fb + n * C * hw + p;
  float sa = 0.f, sb = 0.f;
  for (int c = 0; c < C; ++c) {
    sa += a[c * hw] * a[c * hw];
    sb += b[c * hw] * b[c * hw];
  }
  const float ia = sqrtf(sa) + eps, ib = sqrtf(sb) + eps;
  float s = 0.f;
  for (int c = 0; c < C; ++c) {
    const float t = a[c * hw] / ia - b[c * hw] / ib;
    s += (w != nullptr ? w[c] : 1.f) * (t * t);
  }
  d[idx] = s;
}

// Bilinear upsample (torch, align_corners=False) of d (N, h, w) to (N, H, W), added to out.
extern "C" __global__ void upsample_bilinear_add(const float* __restrict__ d, int N, int h, int w, int H, int W,
                                      float* __restrict__ out) {
  const long long HW = static_cast<long long>(H) * W;
  const long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= N * HW) return;
  const long long n = idx / HW;
  const int Y = static_cast<int>((idx % HW) / W), X = static_cast<int>(idx % W);
  const float sy = fmaxf((Y + 0.5f) * (static_cast<float>(h) / H) - 0.5f, 0.f);
  const float sx = fmaxf((X + 0.5f) * (static_cast<float>(w) / W) - 0.5f, 0.f);
  const int y0 = min(static_cast<int>(floorf(sy)), h - 1), x0 = min(static_cast<int>(floorf(sx)), w - 1);
  const int y1 = min(y0 + 1, h - 1), x1 = min(x0 + 1, w - 1);
  const float ly = sy - y0, lx = sx - x0;
  const float* dn = d + n * h * w;
  const float top = dn[y0 * w + x0] * (1.f - lx) + dn[y0 * w + x1] * lx;
  const float bot = dn[y1 * w + x0] * (1.f - lx) + dn[y1 * w + x1] * lx;
  out[idx] += top * (1.f - ly) + bot * ly;
}
