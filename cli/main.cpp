// neuroseg: one program, one subcommand per job. Errors end as one line on stderr
// ("neuroseg: error: <file>: <problem>") and a non-zero exit code: 1 for failures,
// 2 for command-line mistakes.
#include <cstdio>
#include <cstdlib>

#include <unistd.h>
#include <malloc.h>
#include <exception>
#include <string>

#include <CLI/CLI.hpp>
#include <c10/core/DeviceType.h>
#include <torch/version.h>
#include <itkVersion.h>

#include "cli/commands.h"

namespace {

std::string version_string() {
  std::string s = "neuroseg " NEUROSEG_VERSION " (LibTorch " TORCH_VERSION ", ITK ";
  s += itk::Version::GetITKVersion();
#ifdef NEUROSEG_WITH_CUDA
  s += ", CUDA kernels built)";
#else
  s += ", CPU only)";
#endif
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  // OpenMP threads that finish a parallel region spin for a while before sleeping (libgomp's
  // default). When the cores are shared (other jobs, ctest -j, a loader thread) the spinning
  // thread steals the core the straggler needs: evaluating a 116-label atlas took 18.5 s
  // instead of 1.4 s on a busy 2-core machine. libgomp reads OMP_WAIT_POLICY only at load
  // time, so set it and start again, unless the user chose a policy.
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);  // returns only on failure: carry on with the default
  }
  // LibTorch frees and re-allocates multi-megabyte intermediates for every window and layer;
  // by default glibc hands each back to the OS (munmap) and the next one page-faults in
  // again, which cost ~30% of CPU inference time here. Keep freed memory in the heap for
  // reuse instead (measured in docs/benchmarks.md).
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  CLI::App app{"neuroseg: segmentation of 3D neuroimages (MRI, CT, EM, light microscopy) on the GPU"};
  app.set_version_flag("--version", version_string());
  app.require_subcommand(1);
  neuroseg::cli::add_all_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "neuroseg: error: %s\n", e.what());
    if (e.get_exit_code() != 0) std::fprintf(stderr, "Run with --help for usage.\n");
    return 2;
  } catch (const std::exception& e) {
    std::string msg = e.what();
    // One line, always: c10 errors carry a multi-line backtrace after the first line.
    if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
    std::fprintf(stderr, "neuroseg: error: %s\n", msg.c_str());
    return 1;
  }
  return 0;
}
