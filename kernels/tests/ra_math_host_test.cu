// Host-side test of the per-element math in ra_math.cuh, built and run by nvcc on a
// machine without a GPU (scripts/compile_kernels.sh). Expected values come from numpy
// (np.pad, np.rint, np.round) and skimage.exposure._adapthist.clip_histogram.
#include <cstdio>
#include <cstdlib>

#include "ra_math.cuh"

static int failures = 0;
#define CHECK_EQ(a, b)                                                                  \
  do {                                                                                  \
    long long _a = (a), _b = (b);                                                       \
    if (_a != _b) {                                                                     \
      std::printf("FAIL %s:%d: %s = %lld, expected %lld\n", __FILE__, __LINE__, #a, _a, _b); \
      ++failures;                                                                       \
    }                                                                                   \
  } while (0)

int main() {
  // np.pad(np.arange(4), 10, mode="reflect")
  const int reflect4[] = {2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1};
  for (int i = -10; i < 14; ++i) CHECK_EQ(ra::reflect_index(i, 4), reflect4[i + 10]);
  for (int i = -5; i < 5; ++i) CHECK_EQ(ra::reflect_index(i, 1), 0);
  // np.pad(np.arange(3), 7, mode="symmetric") == scipy.ndimage mode "reflect"
  const int symmetric3[] = {0, 0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0, 0, 1, 2, 2};
  for (int i = -7; i < 10; ++i) CHECK_EQ(ra::symmetric_index(i, 3), symmetric3[i + 7]);
  // img_as_uint: float32 product, round half to even
  CHECK_EQ(ra::to_u16(0.5f), 32768);
  CHECK_EQ(ra::to_u16(1.0f / 3.0f), 21845);
  CHECK_EQ(ra::to_u16(0.999999f), 65535);
  CHECK_EQ(ra::to_u16(1e-5f), 1);
  CHECK_EQ(ra::to_u16(-0.5f), 0);
  CHECK_EQ(ra::to_u16(2.0f), 65535);
  // rescale to 14 bits in float64, np.round
  CHECK_EQ(ra::stretch14(100, 100, 60000), 0);
  CHECK_EQ(ra::stretch14(12345, 100, 60000), 3349);
  CHECK_EQ(ra::stretch14(30050, 100, 60000), 8192);
  CHECK_EQ(ra::stretch14(60000, 100, 60000), 16383);
  CHECK_EQ(ra::stretch14(40000, 7, 7), 16383);  // constant image: clipped into range
  // clip_histogram, two redistribution patterns
  int h1[] = {9, 0, 0, 5, 1, 0, 3, 0, 2, 7, 0, 0, 1, 0, 0, 4};
  const int e1[] = {5, 0, 1, 5, 2, 0, 4, 0, 3, 5, 1, 0, 2, 0, 1, 4};
  ra::clip_histogram(h1, 16, 5);
  for (int i = 0; i < 16; ++i) CHECK_EQ(h1[i], e1[i]);
  int h2[] = {30, 0, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0};
  const int e2[] = {3, 2, 3, 2, 2, 3, 2, 2, 2, 2, 2, 2, 2, 3, 2, 2};
  ra::clip_histogram(h2, 16, 3);
  for (int i = 0; i < 16; ++i) CHECK_EQ(h2[i], e2[i]);
  // map_histogram: cumsum * (16383 / n_px), truncated
  CHECK_EQ(ra::map_value(128, 256), 8191);
  CHECK_EQ(ra::map_value(256, 256), 16383);
  if (failures) {
    std::printf("%d check(s) failed\n", failures);
    return EXIT_FAILURE;
  }
  std::printf("ra_math host test: all checks passed\n");
  return EXIT_SUCCESS;
}
