// The two-thread skeleton (metrics/skeleton.cpp, Thinner::run_two_threads) under
// ThreadSanitizer: this file and metrics/skeleton.cpp are built with -fsanitize=thread, so
// an unordered access of the two threads to the column codes (plain bytes) or a progress
// counter read without acquire is reported and fails the test (TSAN_OPTIONS=halt_on_error=1).
// The bit image's words are relaxed atomics, which TSan does not flag: the one-thread
// comparison below (and the unit test) covers them. Mutants reported here: pass k + 1 one
// plane closer to pass k; a relaxed load of the other thread's progress; a plain OR into
// the word the two halves share when encoding (36 x 100 x 21).
#include <cstdio>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "metrics/skeleton.h"

int main() {
  at::manual_seed(5);
  int failures = 0;
  // Dense blobs large enough for two threads (>= 32 k foreground voxels, >= 4 planes,
  // >= 2048 voxels per padded plane): depth 4, the smallest planes allowed, odd sizes, and
  // planes wide enough for two passes in flight per thread (6 x 400 x 330).
  for (const auto& shape : std::vector<std::vector<int64_t>>{{13, 131, 101}, {4, 256, 200}, {48, 46, 46}, {36, 100, 21}, {64, 64, 64}, {6, 400, 330}}) {
    at::Tensor noise = at::rand(shape, at::kFloat).unsqueeze(0).unsqueeze(0);
    noise = at::avg_pool3d(noise, {3, 3, 3}, {1, 1, 1}, {1, 1, 1});
    at::Tensor mask = (noise[0][0] > 0.5).to(at::kByte);
    // Full first and last rows in every plane: on the 36 x 100 x 21 crop the last voxel of
    // one thread's half and the first of the other's then share a word of the bit image.
    mask.select(1, 0).fill_(1);
    mask.select(1, -1).fill_(1);
    at::set_num_threads(1);
    const at::Tensor one = neuroseg::metrics::skeletonize(mask);
    at::set_num_threads(2);
    const at::Tensor two = neuroseg::metrics::skeletonize(mask);
    const bool same = at::equal(one, two);
    std::printf("%lld x %lld x %lld: %lld foreground, %lld on the skeleton, two threads %s\n",
                static_cast<long long>(shape[0]), static_cast<long long>(shape[1]), static_cast<long long>(shape[2]),
                static_cast<long long>(mask.sum().item<int64_t>()), static_cast<long long>(one.sum().item<int64_t>()),
                same ? "agree" : "DIFFER");
    failures += !same;
  }
  // A crop that starts the second thread (it fills half the planes) but holds fewer than
  // 32 k foreground voxels, so the first thread thins alone.
  at::Tensor noise = at::rand({40, 60, 60}, at::kFloat).unsqueeze(0).unsqueeze(0);
  noise = at::avg_pool3d(noise, {3, 3, 3}, {1, 1, 1}, {1, 1, 1});
  at::Tensor sparse = (noise[0][0] > 0.58).to(at::kByte);
  sparse.select(0, 0).select(0, 0).fill_(1);
  sparse.select(0, 39).select(0, 59).fill_(1);
  at::set_num_threads(1);
  const at::Tensor one = neuroseg::metrics::skeletonize(sparse);
  at::set_num_threads(2);
  const bool same = at::equal(one, neuroseg::metrics::skeletonize(sparse));
  std::printf("40 x 60 x 60, %lld foreground (one thread thins): two threads %s\n",
              static_cast<long long>(sparse.sum().item<int64_t>()), same ? "agree" : "DIFFER");
  failures += !same;
  return failures == 0 ? 0 : 1;
}
