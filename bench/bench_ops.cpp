// Times one neuroseg op on a volume read from a file (so a Python peer can time the same
// array). Prints one JSON line.
//   neuroseg_bench_ops --op edt --input mask.nii.gz [--repeats 3] [--threads 2] [--device cpu|cuda]
#include <chrono>
#include <cstdio>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/cuda.h>

#include "io/volume_io.h"
#include "metrics/distance_transform.h"

int main(int argc, char** argv) {
  CLI::App app{"neuroseg op timing"};
  std::string op = "edt", input, device = "cpu";
  int64_t repeats = 3, threads = 2;
  app.add_option("--op", op)->check(CLI::IsMember({"edt"}));
  app.add_option("--input", input)->required();
  app.add_option("--repeats", repeats);
  app.add_option("--threads", threads);
  app.add_option("--device", device);
  CLI11_PARSE(app, argc, argv);
  at::set_num_threads(static_cast<int>(threads));
  const neuroseg::io::Volume v = neuroseg::io::read_volume(input);
  const at::Tensor mask = v.data[0].to(c10::Device(device));
  const auto& sp = v.geometry.spacing;
  auto run = [&] {
    at::Tensor d = neuroseg::metrics::distance_transform_edt(mask, {sp[2], sp[1], sp[0]});
    if (mask.is_cuda()) torch::cuda::synchronize();
    return d;
  };
  run();
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t r = 0; r < repeats; ++r) run();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / repeats;
  std::printf("%s\n", nlohmann::json{{"op", op}, {"voxels", mask.numel()}, {"seconds", seconds}, {"device", device},
                                     {"threads", threads}}
                          .dump()
                          .c_str());
  return 0;
}
