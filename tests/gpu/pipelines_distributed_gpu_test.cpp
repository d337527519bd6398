// NCCL through c10d with world size 1 on this rank's GPU: the process group joins through the
// TCPStore, and broadcast, the bucketed all-reduce and the scalar sums leave values as they
// are (a sum over one rank), on the device.
#include <doctest/doctest.h>

#include <ATen/ATen.h>

#include "pipelines/distributed.h"

using namespace neuroseg;

TEST_SUITE("gpu_pipelines_distributed") {
  TEST_CASE("NCCL, world size 1: broadcast, bucketed all-reduce and sums") {
    pipelines::Rendezvous r;
    r.master_port = 29731;
    const auto group = pipelines::ProcessGroup::join(r, c10::Device(c10::kCUDA, 0));
    REQUIRE(group->world_size() == 1);
    at::manual_seed(3);
    std::vector<at::Tensor> ts = {at::randn({1000}, at::device(at::kCUDA)), at::randn({3, 4, 5}, at::device(at::kCUDA)),
                                  at::randn({7}, at::device(at::kCUDA))};
    std::vector<at::Tensor> before;
    for (const auto& t : ts) before.push_back(t.clone());
    group->allreduce_sum(ts, /*bucket_bytes=*/2048);  // several buckets
    for (size_t i = 0; i < ts.size(); ++i) CHECK(at::equal(ts[i], before[i]));
    group->broadcast(ts);
    for (size_t i = 0; i < ts.size(); ++i) CHECK(at::equal(ts[i], before[i]));
    CHECK(group->sum_values({1.5, -2.0}) == std::vector<double>{1.5, -2.0});
    group->barrier();
  }
}
