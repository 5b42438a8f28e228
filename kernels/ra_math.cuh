// Per-element math shared by the CUDA kernels and their host test (kernels/tests).
// Everything here is __host__ __device__ so that nvcc can check it on a machine without a GPU.
#pragma once

#ifdef __CUDACC__
#define RA_HD __host__ __device__ __forceinline__
#else
#define RA_HD inline
#endif

namespace ra {

// The CLAHE constants come from ra_sdk/spec.py, the one place the CPU path reads them too:
// kernels/_build.py passes them to NVRTC, scripts/compile_kernels.sh to nvcc.
#if !defined(RA_CLAHE_GREY) || !defined(RA_CLAHE_BINS)
#error "compile with -DRA_CLAHE_GREY=<levels> -DRA_CLAHE_BINS=<bins> (ra_sdk.kernels._build.SPEC_DEFINES)"
#endif
constexpr int kGrey = RA_CLAHE_GREY;   // scikit-image's NR_OF_GRAY (2^14 levels)
constexpr int kBins = RA_CLAHE_BINS;   // equalize_adapthist's default nbins
constexpr int kBinSize = 1 + kGrey / kBins;  // 65: grey level -> bin

// numpy.pad(mode="reflect"): mirror without repeating the edge, d c b | a b c d | c b a.
// Periodic with period 2(n-1), which is what numpy's repeated reflection amounts to.
RA_HD int reflect_index(int i, int n) {
  if (n == 1) return 0;
  const int p = 2 * (n - 1);
  i %= p;
  if (i < 0) i += p;
  return i < n ? i : p - i;
}

// scipy.ndimage mode="reflect" (numpy "symmetric"): d c b a | a b c d | d c b a.
RA_HD int symmetric_index(int i, int n) {
  const int p = 2 * n;
  i %= p;
  if (i < 0) i += p;
  return i < n ? i : p - 1 - i;
}

// skimage.util.img_as_uint for float input in [0, 1]: float32 product, round half to even.
RA_HD int to_u16(float x) {
  x = x > 0.f ? (x < 1.f ? x : 1.f) : 0.f;  // also maps NaN to 0
  const float v = x * 65535.0f;
#ifdef __CUDA_ARCH__
  return static_cast<int>(rintf(v));
#else
  return static_cast<int>(__builtin_rintf(v));
#endif
}
RA_HD int to_u16(unsigned short x) { return x; }

// rescale_intensity(u, out_range=(0, 16383)) in float64 then np.round (half to even).
RA_HD int stretch14(int u, int mn, int mx) {
  if (mn == mx) return u < kGrey - 1 ? u : kGrey - 1;
  const double v = (static_cast<double>(u - mn) / static_cast<double>(mx - mn)) * (kGrey - 1.0);
#ifdef __CUDA_ARCH__
  return static_cast<int>(rint(v));
#else
  return static_cast<int>(__builtin_rint(v));
#endif
}

// skimage.exposure._adapthist.clip_histogram, the same arithmetic and the same
// redistribution loop, on one histogram of nb bins.
RA_HD void clip_histogram(int* hist, int nb, int clim) {
  long long n_excess = 0;
  for (int i = 0; i < nb; ++i)
    if (hist[i] > clim) {
      n_excess += hist[i] - clim;
      hist[i] = clim;
    }
  const long long bin_incr = n_excess / nb;
  const long long upper = clim - bin_incr;
  for (int i = 0; i < nb; ++i)
    if (hist[i] < upper) {
      hist[i] += static_cast<int>(bin_incr);
      n_excess -= bin_incr;
    }
  for (int i = 0; i < nb; ++i)
    if (hist[i] >= upper && hist[i] < clim) {
      n_excess += hist[i] - clim;
      hist[i] = clim;
    }
  while (n_excess > 0) {
    const long long prev = n_excess;
    for (int index = 0; index < nb; ++index) {
      long long n_under = 0;
      for (int i = 0; i < nb; ++i) n_under += hist[i] < clim;
      long long step = n_under / n_excess;
      if (step < 1) step = 1;
      // skimage selects with the mask taken before the increments; a bin is touched at
      // most once per pass, so testing it as we go is the same.
      for (long long j = index; j < nb; j += step)
        if (hist[j] < clim) {
          ++hist[j];
          --n_excess;
        }
      if (n_excess <= 0) break;
    }
    if (prev == n_excess) break;
  }
}

// map_histogram: cumulative counts * (16383 / n_px) in float64, clipped, truncated.
RA_HD int map_value(long long cum, int n_px) {
  double v = static_cast<double>(cum) * ((kGrey - 1.0) / static_cast<double>(n_px));
  if (v > kGrey - 1.0) v = kGrey - 1.0;
  return static_cast<int>(v);
}

}  // namespace ra
