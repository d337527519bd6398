// Times one neuroseg op on a volume read from a file, so that a Python peer can time the
// same array, and optionally writes the op's result (the cross-check tests compare it with
// scipy / cc3d / scikit-image / MONAI). Prints one JSON line. Ops: bench/ops/*.cpp.
//   neuroseg_bench_ops --op edt --input mask.nii.gz [--param P] [--repeats 3] [--threads 2]
//                      [--device cpu|cuda] [--output result.nii.gz]
#include <chrono>
#include <cstdio>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/cuda.h>

#include "bench/ops/op_registry.h"
#include "io/dtype.h"
#include "io/volume_io.h"

namespace neuroseg::bench {
std::map<std::string, Op>& op_registry() {
  static std::map<std::string, Op> ops;
  return ops;
}
}  // namespace neuroseg::bench

int main(int argc, char** argv) {
  using neuroseg::bench::op_registry;
  CLI::App app{"neuroseg op timing"};
  std::string op = "edt", input, output, device = "cpu", param;
  int64_t repeats = 3, threads = 2;
  std::vector<std::string> names;
  std::string listing;
  for (const auto& [name, o] : op_registry()) {
    names.push_back(name);
    listing += "\n  " + name + ": " + o.help;
  }
  app.footer("ops:" + listing);
  app.add_option("--op", op)->check(CLI::IsMember(names));
  app.add_option("--input", input)->required();
  app.add_option("--param", param, "op-specific parameter");
  app.add_option("--output", output, "write the op's result here (input geometry)");
  app.add_option("--repeats", repeats);
  app.add_option("--threads", threads);
  app.add_option("--device", device);
  CLI11_PARSE(app, argc, argv);
  try {
    at::set_num_threads(static_cast<int>(threads));
    const neuroseg::io::Volume v = neuroseg::io::read_volume(input);
    const auto& sp = v.geometry.spacing;
    const auto& entry = op_registry().at(op);
    neuroseg::bench::OpInput in{v.data[0].to(c10::Device(device)), {sp[2], sp[1], sp[0]}, param};
    if (entry.prepare) in = entry.prepare(in);
    const auto& fn = entry.run;
    auto run = [&] {
      at::Tensor r = fn(in);
      if (in.data.is_cuda()) torch::cuda::synchronize();
      return r;
    };
    at::Tensor result = run();  // warm-up (and the result written out)
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t r = 0; r < repeats; ++r) run();
    const double seconds =
        repeats > 0 ? std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / repeats : 0.0;
    nlohmann::json line{{"op", op}, {"voxels", v.data[0].numel()}, {"seconds", seconds}, {"device", device},
                        {"threads", threads}};
    if (result.dim() <= 1 && result.numel() <= 16) {
      const at::Tensor values = result.to(at::kDouble).cpu().contiguous();
      line["values"] = std::vector<double>(values.data_ptr<double>(), values.data_ptr<double>() + values.numel());
    } else if (!output.empty()) {
      neuroseg::io::Volume out = v;
      out.data = result.cpu().contiguous().unsqueeze(0);
      out.source.dtype = neuroseg::io::dtype_from_scalar_type(out.data.scalar_type(), output);
      out.source.scl_slope = 1.0;
      out.source.scl_inter = 0.0;
      neuroseg::io::write_volume(out, output);
    }
    std::printf("%s\n", line.dump().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "neuroseg_bench_ops: %s\n", e.what());
    return 1;
  }
  return 0;
}
