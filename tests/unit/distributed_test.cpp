// Rendezvous from the environment (torchrun, SLURM, malformed values), the global-batch
// split, and a Gloo group of one rank over loopback.
#include <doctest/doctest.h>

#include <cstdlib>
#include <optional>
#include <string>

#include <ATen/ATen.h>

#include "io/error.h"
#include "pipelines/distributed.h"

using namespace neuroseg;

namespace {

// Sets variables for one scope and restores the previous environment.
class EnvScope {
 public:
  EnvScope(std::initializer_list<std::pair<const char*, const char*>> vars) {
    for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS",
                             "SLURM_LOCALID", "SLURM_LAUNCH_NODE_IPADDR"}) {
      const char* v = std::getenv(name);
      saved_.push_back({name, v ? std::optional<std::string>(v) : std::nullopt});
      unsetenv(name);
    }
    for (const auto& [k, v] : vars) setenv(k, v, 1);
  }
  ~EnvScope() {
    for (const auto& [k, v] : saved_) v ? setenv(k, v->c_str(), 1) : unsetenv(k);
  }

 private:
  std::vector<std::pair<const char*, std::optional<std::string>>> saved_;
};

}  // namespace

TEST_SUITE("pipelines_distributed") {
  TEST_CASE("batch_share splits a global batch into contiguous shares that cover it once") {
    for (int64_t batch : {1, 2, 5, 8, 13})
      for (int world = 1; world <= batch; ++world) {
        int64_t next = 0;
        for (int r = 0; r < world; ++r) {
          const auto [first, last] = pipelines::batch_share(batch, r, world);
          CHECK(first == next);
          CHECK(last - first >= batch / world);
          CHECK(last - first <= batch / world + 1);
          next = last;
        }
        CHECK(next == batch);
      }
  }

  TEST_CASE("rendezvous from torchrun's and SLURM's variables; malformed ones name the variable") {
    {
      EnvScope e({});
      const auto r = pipelines::Rendezvous::from_environment();
      CHECK(r.world_size == 1);
      CHECK(r.source == "single");
    }
    {
      EnvScope e({{"RANK", "2"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "0"}, {"MASTER_ADDR", "10.0.0.7"}, {"MASTER_PORT", "1234"}});
      const auto r = pipelines::Rendezvous::from_environment();
      CHECK(r.rank == 2);
      CHECK(r.world_size == 4);
      CHECK(r.master_addr == "10.0.0.7");
      CHECK(r.master_port == 1234);
      CHECK(r.source == "torchrun");
    }
    {
      EnvScope e({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"}, {"SLURM_LAUNCH_NODE_IPADDR", "10.1.2.3"}});
      const auto r = pipelines::Rendezvous::from_environment();
      CHECK(r.rank == 5);
      CHECK(r.local_rank == 1);
      CHECK(r.master_addr == "10.1.2.3");
      CHECK(r.master_port == 29500);
      CHECK(r.source == "slurm");
    }
    {
      EnvScope e({{"RANK", "4"}, {"WORLD_SIZE", "4"}});
      CHECK_THROWS_WITH_AS(pipelines::Rendezvous::from_environment(), doctest::Contains("RANK"), io::Error);
    }
    {
      EnvScope e({{"RANK", "0"}});
      CHECK_THROWS_WITH_AS(pipelines::Rendezvous::from_environment(), doctest::Contains("WORLD_SIZE"), io::Error);
    }
    {
      EnvScope e({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}});
      CHECK_THROWS_WITH_AS(pipelines::Rendezvous::from_environment(), doctest::Contains("MASTER_ADDR"), io::Error);
    }
  }

  TEST_CASE("a Gloo group of one rank: collectives leave values as they are") {
    if (!pipelines::distributed_available()) return;
    pipelines::Rendezvous r;
    r.master_port = 29000 + static_cast<int>(std::rand() % 1000);
    const auto group = pipelines::ProcessGroup::join(r, c10::kCPU);
    std::vector<at::Tensor> ts = {at::randn({100}), at::randn({2, 3}).to(at::kDouble)};
    const std::vector<at::Tensor> before = {ts[0].clone(), ts[1].clone()};
    group->allreduce_sum(ts, 64);
    CHECK(at::equal(ts[0], before[0]));
    CHECK(at::allclose(ts[1], before[1], 1e-6, 1e-7));  // packed through float32
    CHECK(group->sum_values({2.5}) == std::vector<double>{2.5});
  }
}
