// doctest main shared by the test binaries. The gpu binary reports "SKIP: no CUDA"
// (ctest's SKIP_REGULAR_EXPRESSION) and succeeds when no CUDA device is usable, so GPU
// tests show as skipped, not passed, on CPU-only machines.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#ifdef NEUROSEG_GPU_TESTS
#include <ATen/Context.h>
#endif

int main(int argc, char** argv) {
#ifdef NEUROSEG_GPU_TESTS
  if (!at::hasCUDA() || at::getNumGPUs() == 0) {
    std::printf("SKIP: no CUDA device (the gpu tests need one)\n");
    return 0;
  }
#endif
  doctest::Context context(argc, argv);
  return context.run();
}
