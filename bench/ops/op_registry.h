#pragma once
// Ops that bench/bench_ops.cpp can time (and write out, for the cross-check tests in
// tests/slow/). Each op lives in its own bench/ops/<name>.cpp and registers itself:
//   NEUROSEG_BENCH_OP(edt, "exact EDT with the volume's spacing") { return ...; }
// `run` gets channel 0 of the input volume on the chosen device and its spacing (z, y, x),
// and returns the op's result as a (D, H, W) tensor on any device (written with --output), or
// a few scalars (at most 16, printed in the JSON line as "values").
// An op may declare a `prepare` step (NEUROSEG_BENCH_OP_PREPARED) that turns the file's
// contents into the op's real input once, outside the timed loop (e.g. unpacking two masks
// stored as bit flags of one label volume).
#include <array>
#include <functional>
#include <map>
#include <string>

#include <ATen/core/Tensor.h>

namespace neuroseg::bench {

struct OpInput {
  at::Tensor data;                   ///< (D, H, W), input dtype, on --device
  std::array<double, 3> spacing_zyx;
  std::string param;                 ///< --param, op-specific (e.g. connectivity)
};

using OpFn = std::function<at::Tensor(const OpInput&)>;
using PrepareFn = std::function<OpInput(const OpInput&)>;

struct Op {
  std::string help;
  OpFn run;
  PrepareFn prepare;  ///< optional, untimed
};

std::map<std::string, Op>& op_registry();

struct OpRegistrar {
  OpRegistrar(const std::string& name, const std::string& help, OpFn fn, PrepareFn prepare = {}) {
    op_registry()[name] = Op{help, std::move(fn), std::move(prepare)};
  }
};

}  // namespace neuroseg::bench

#define NEUROSEG_BENCH_OP(name, help)                                                              \
  static at::Tensor neuroseg_bench_op_##name(const ::neuroseg::bench::OpInput& in);                \
  static ::neuroseg::bench::OpRegistrar neuroseg_bench_op_registrar_##name(#name, help,           \
                                                                           neuroseg_bench_op_##name); \
  static at::Tensor neuroseg_bench_op_##name(const ::neuroseg::bench::OpInput& in)

// As NEUROSEG_BENCH_OP, with `prepare` (an OpInput -> OpInput function) run once, untimed.
#define NEUROSEG_BENCH_OP_PREPARED(name, help, prepare)                                              \
  static at::Tensor neuroseg_bench_op_##name(const ::neuroseg::bench::OpInput& in);                \
  static ::neuroseg::bench::OpRegistrar neuroseg_bench_op_registrar_##name(#name, help,           \
                                                                           neuroseg_bench_op_##name, prepare); \
  static at::Tensor neuroseg_bench_op_##name(const ::neuroseg::bench::OpInput& in)
