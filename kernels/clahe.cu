// Batched CLAHE with scikit-image semantics (equalize_adapthist, default arguments,
// applied to each 2-D image of a (B, H, W) batch). Four launches, no host round-trip:
//   clahe_minmax      per-image min/max of the uint16 view of the input
//   clahe_tile_maps   per contextual region: histogram, clip + redistribution, mapping
//   clahe_interp      per pixel: bilinear blend of four mappings (float32 sum, skimage order)
//   clahe_rescale     per-image rescale of the result to [0, 1]
// Compile with --fmad=false: the float32 sums must not be contracted.
#include "ra_math.cuh"

template <typename T>
__device__ __forceinline__ int load_u16(const T* p, long long i) {
  return ra::to_u16(p[i]);
}

__device__ __forceinline__ void block_minmax(int& lo, int& hi) {
  __shared__ int s_lo[32], s_hi[32];
  for (int off = 16; off > 0; off >>= 1) {
    lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, off));
    hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, off));
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    s_lo[warp] = lo;
    s_hi[warp] = hi;
  }
  __syncthreads();
  if (warp == 0) {
    const int nw = (blockDim.x + 31) / 32;
    lo = lane < nw ? s_lo[lane] : 0x7fffffff;
    hi = lane < nw ? s_hi[lane] : -1;
    for (int off = 16; off > 0; off >>= 1) {
      lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, off));
      hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, off));
    }
  }
}

// grid: (B); block: 256. mnmx[2b] = min, mnmx[2b+1] = max of the uint16 view of image b.
template <typename T>
__global__ void clahe_minmax(const T* __restrict__ x, long long hw, int* __restrict__ mnmx) {
  const T* xb = x + static_cast<long long>(blockIdx.x) * hw;
  int lo = 0x7fffffff, hi = -1;
  for (long long i = threadIdx.x; i < hw; i += blockDim.x) {
    const int u = load_u16(xb, i);
    lo = min(lo, u);
    hi = max(hi, u);
  }
  block_minmax(lo, hi);
  if (threadIdx.x == 0) {
    mnmx[2 * blockIdx.x] = lo;
    mnmx[2 * blockIdx.x + 1] = hi;
  }
}

// grid: (nhy * nhx, B); block: 256. Region (ty, tx) covers padded rows ky/2 + ty*ky .. + ky
// (and likewise columns); padded coordinates map back to the image by numpy's 'reflect'.
template <typename T>
__global__ void clahe_tile_maps(const T* __restrict__ x, int H, int W, int ky, int kx, int pad_y0,
                                int pad_x0, int nhy, int nhx, int clim,
                                const int* __restrict__ mnmx, unsigned short* __restrict__ maps) {
  __shared__ int hist[ra::kBins];
  const int b = blockIdx.y, tile = blockIdx.x;
  const int ty = tile / nhx, tx = tile % nhx;
  const T* xb = x + static_cast<long long>(b) * H * W;
  const int mn = mnmx[2 * b], mx = mnmx[2 * b + 1];
  for (int i = threadIdx.x; i < ra::kBins; i += blockDim.x) hist[i] = 0;
  __syncthreads();
  const int n_px = ky * kx;
  for (int i = threadIdx.x; i < n_px; i += blockDim.x) {
    const int py = ky / 2 + ty * ky + i / kx;
    const int px = kx / 2 + tx * kx + i % kx;
    const int oy = ra::reflect_index(py - pad_y0, H);
    const int ox = ra::reflect_index(px - pad_x0, W);
    const int s = ra::stretch14(load_u16(xb, static_cast<long long>(oy) * W + ox), mn, mx);
    atomicAdd(&hist[s / ra::kBinSize], 1);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    // The redistribution loop is sequential by definition; regions run in parallel.
    ra::clip_histogram(hist, ra::kBins, clim);
    long long cum = 0;
    for (int i = 0; i < ra::kBins; ++i) {
      cum += hist[i];
      hist[i] = ra::map_value(cum, n_px);
    }
  }
  __syncthreads();
  unsigned short* m = maps + (static_cast<long long>(b) * nhy * nhx + tile) * ra::kBins;
  for (int i = threadIdx.x; i < ra::kBins; i += blockDim.x) m[i] = static_cast<unsigned short>(hist[i]);
}

// grid: ceil(B*H*W / 256); block: 256. Writes the integer result as float and the
// per-image min/max of it (omnmx, initialised to (INT_MAX, 0) per image).
template <typename T>
__global__ void clahe_interp(const T* __restrict__ x, int B, int H, int W, int ky, int kx, int pad_y0,
                             int pad_x0, int nhy, int nhx, const int* __restrict__ mnmx,
                             const unsigned short* __restrict__ maps, float* __restrict__ out,
                             int* __restrict__ omnmx) {
  const long long hw = static_cast<long long>(H) * W;
  const long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * hw) return;
  const int b = static_cast<int>(idx / hw);
  const int rem = static_cast<int>(idx % hw);
  const int y = rem / W, xx = rem % W;
  const int py = y + pad_y0, px = xx + pad_x0;
  const int by = py / ky, bx = px / kx;
  const double fy = static_cast<double>(py % ky) / ky;
  const double fx = static_cast<double>(px % kx) / kx;
  const int bin = ra::stretch14(load_u16(x, idx), mnmx[2 * b], mnmx[2 * b + 1]) / ra::kBinSize;
  const unsigned short* mb = maps + static_cast<long long>(b) * nhy * nhx * ra::kBins;
  float acc = 0.f;
#pragma unroll
  for (int ey = 0; ey < 2; ++ey) {
    const double wy = ey ? fy : 1.0 - fy;
    const int ty = min(max(by + ey - 1, 0), nhy - 1);  // the edge-padded map array
#pragma unroll
    for (int ex = 0; ex < 2; ++ex) {
      const double wx = ex ? fx : 1.0 - fx;
      const int tx = min(max(bx + ex - 1, 0), nhx - 1);
      const int m = mb[(ty * nhx + tx) * ra::kBins + bin];
      acc += static_cast<float>(static_cast<double>(m) * (wx * wy));
    }
  }
  const int r = static_cast<int>(acc);  // astype(uint16): truncation
  out[idx] = static_cast<float>(r);
  atomicMin(&omnmx[2 * b], r);
  atomicMax(&omnmx[2 * b + 1], r);
}

// grid: ceil(B*H*W / 256); block: 256. rescale_intensity of the result to [0, 1]:
// float32 arithmetic for float input, float64 for uint16 input (as skimage).
template <bool F64>
__global__ void clahe_rescale(float* __restrict__ out, int B, long long hw, const int* __restrict__ omnmx) {
  const long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * hw) return;
  const int b = static_cast<int>(idx / hw);
  const int mn = omnmx[2 * b], mx = omnmx[2 * b + 1];
  const float r = out[idx];
  if (mn == mx) {
    out[idx] = r > 1.f ? 1.f : (r < 0.f ? 0.f : r);
  } else if (F64) {
    out[idx] = static_cast<float>((static_cast<double>(r) - mn) / static_cast<double>(mx - mn));
  } else {
    out[idx] = (r - static_cast<float>(mn)) / static_cast<float>(mx - mn);
  }
}

// Explicit instantiations so that nvcc (the CI compile check) builds every specialisation.
template __global__ void clahe_minmax<float>(const float*, long long, int*);
template __global__ void clahe_minmax<unsigned short>(const unsigned short*, long long, int*);
template __global__ void clahe_tile_maps<float>(const float*, int, int, int, int, int, int, int, int, int, const int*, unsigned short*);
template __global__ void clahe_tile_maps<unsigned short>(const unsigned short*, int, int, int, int, int, int, int, int, int, const int*, unsigned short*);
template __global__ void clahe_interp<float>(const float*, int, int, int, int, int, int, int, int, int, const int*, const unsigned short*, float*, int*);
template __global__ void clahe_interp<unsigned short>(const unsigned short*, int, int, int, int, int, int, int, int, int, const int*, const unsigned short*, float*, int*);
template __global__ void clahe_rescale<false>(float*, int, long long, const int*);
template __global__ void clahe_rescale<true>(float*, int, long long, const int*);
