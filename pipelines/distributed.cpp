#include "pipelines/distributed.h"

#include <cstdlib>
#include <string>

#include <ATen/ATen.h>

#if defined(NEUROSEG_WITH_GLOO) || defined(NEUROSEG_WITH_NCCL)
#define NEUROSEG_WITH_C10D 1
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#ifdef NEUROSEG_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef NEUROSEG_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "io/error.h"

namespace neuroseg::pipelines {
namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

int env_int(const char* name, int lo, int hi) {
  const char* v = env(name);
  if (!v) throw io::Error(std::string("environment variable ") + name, "is not set (needed for distributed runs)");
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < lo || x > hi)
    throw io::Error(std::string("environment variable ") + name,
                    "'" + std::string(v) + "' is not an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return static_cast<int>(x);
}

}  // namespace

Rendezvous Rendezvous::from_environment() {
  Rendezvous r;
  if (env("RANK")) {
    r.source = "torchrun";
    r.world_size = env_int("WORLD_SIZE", 1, 1 << 20);
    r.rank = env_int("RANK", 0, r.world_size - 1);
    r.local_rank = env("LOCAL_RANK") ? env_int("LOCAL_RANK", 0, r.world_size - 1) : 0;
    r.master_addr = env("MASTER_ADDR") ? env("MASTER_ADDR") : "127.0.0.1";
    r.master_port = env("MASTER_PORT") ? env_int("MASTER_PORT", 1, 65535) : 29500;
  } else if (env("SLURM_PROCID")) {
    r.source = "slurm";
    r.world_size = env_int("SLURM_NTASKS", 1, 1 << 20);
    r.rank = env_int("SLURM_PROCID", 0, r.world_size - 1);
    r.local_rank = env("SLURM_LOCALID") ? env_int("SLURM_LOCALID", 0, r.world_size - 1) : 0;
    if (env("MASTER_ADDR"))
      r.master_addr = env("MASTER_ADDR");
    else if (env("SLURM_LAUNCH_NODE_IPADDR"))
      r.master_addr = env("SLURM_LAUNCH_NODE_IPADDR");
    else
      throw io::Error("environment variable MASTER_ADDR", "is not set (under SLURM set it to the first node's address)");
    r.master_port = env("MASTER_PORT") ? env_int("MASTER_PORT", 1, 65535) : 29500;
  }
  return r;
}

std::pair<int64_t, int64_t> batch_share(int64_t batch, int rank, int world) {
  return {batch * rank / world, batch * (rank + 1) / world};
}

#ifdef NEUROSEG_WITH_C10D

bool distributed_available() { return true; }

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> pg;
  int rank = 0, world = 1;
  c10::Device device = c10::kCPU;  ///< where collectives run: the CPU (Gloo) or this rank's GPU (NCCL)
  at::Tensor on_device(const at::Tensor& t) const { return t.to(device); }
};

std::unique_ptr<ProcessGroup> ProcessGroup::join(const Rendezvous& r, const c10::Device& device) {
  auto impl = std::make_unique<Impl>();
  impl->rank = r.rank;
  impl->world = r.world_size;
  c10d::TCPStoreOptions o;
  o.port = static_cast<std::uint16_t>(r.master_port);
  o.isServer = r.rank == 0;
  o.numWorkers = static_cast<std::size_t>(r.world_size);
  o.timeout = std::chrono::minutes(5);
  try {
    impl->store = c10::make_intrusive<c10d::TCPStore>(r.master_addr, o);
    if (device.is_cuda()) {
#ifdef NEUROSEG_WITH_NCCL
      impl->device = device;
      impl->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl->store, r.rank, r.world_size,
                                                             c10d::ProcessGroupNCCL::Options::create());
#else
      throw io::Error("--distributed", "this neuroseg was built without NCCL; CUDA ranks need it");
#endif
    } else {
#ifdef NEUROSEG_WITH_GLOO
      auto opts = c10d::ProcessGroupGloo::Options::create(std::chrono::minutes(30));
      // Loopback for a single node (and torchrun's default 127.0.0.1); otherwise the interface
      // that resolves this host's name, as torch.distributed does.
      opts->devices.push_back(r.master_addr == "127.0.0.1" || r.master_addr == "localhost"
                                  ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                  : c10d::ProcessGroupGloo::createDefaultDevice());
      impl->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, r.rank, r.world_size, opts);
#else
      throw io::Error("--distributed", "this neuroseg was built without Gloo (apt install libgloo-dev, then rebuild)");
#endif
    }
  } catch (const io::Error&) {
    throw;
  } catch (const std::exception& e) {
    std::string msg = e.what();
    if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
    throw io::Error("rendezvous " + r.master_addr + ":" + std::to_string(r.master_port),
                    "rank " + std::to_string(r.rank) + " of " + std::to_string(r.world_size) + " could not join: " + msg);
  }
  return std::unique_ptr<ProcessGroup>(new ProcessGroup(std::move(impl)));
}

int ProcessGroup::rank() const { return impl_->rank; }
int ProcessGroup::world_size() const { return impl_->world; }

void ProcessGroup::broadcast(const std::vector<at::Tensor>& tensors, int root) {
  for (const at::Tensor& t : tensors) {
    std::vector<at::Tensor> buffer{impl_->on_device(t.detach()).contiguous()};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    impl_->pg->broadcast(buffer, o)->wait();
    t.detach().copy_(buffer[0]);
  }
}

void ProcessGroup::allreduce_sum(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes) {
  // Buckets of consecutive tensors, packed into one flat float32 host buffer each, so that
  // a model with hundreds of small parameters costs a handful of collectives.
  std::vector<std::vector<size_t>> buckets(1);
  int64_t bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (!tensors[i].defined()) continue;
    const int64_t b = tensors[i].numel() * 4;
    if (bytes > 0 && bytes + b > bucket_bytes) buckets.emplace_back(), bytes = 0;
    buckets.back().push_back(i);
    bytes += b;
  }
  std::vector<std::vector<at::Tensor>> flat;
  std::vector<c10::intrusive_ptr<c10d::Work>> work;
  for (const auto& bucket : buckets) {
    if (bucket.empty()) continue;
    std::vector<at::Tensor> parts;
    for (size_t i : bucket) parts.push_back(impl_->on_device(tensors[i].detach().reshape({-1}).to(at::kFloat)));
    flat.push_back({at::cat(parts)});
    work.push_back(impl_->pg->allreduce(flat.back()));
  }
  size_t k = 0;
  for (const auto& bucket : buckets) {
    if (bucket.empty()) continue;
    work[k]->wait();
    int64_t offset = 0;
    for (size_t i : bucket) {
      const at::Tensor& t = tensors[i];
      t.detach().copy_(flat[k][0].narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
    ++k;
  }
}

std::vector<double> ProcessGroup::sum_values(std::vector<double> values) {
  std::vector<at::Tensor> t{impl_->on_device(at::tensor(values, at::kDouble))};
  impl_->pg->allreduce(t)->wait();
  const at::Tensor c = t[0].cpu().contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

void ProcessGroup::barrier() { impl_->pg->barrier()->wait(); }

#else  // neither Gloo nor NCCL headers at build time

bool distributed_available() { return false; }

struct ProcessGroup::Impl {};

std::unique_ptr<ProcessGroup> ProcessGroup::join(const Rendezvous&, const c10::Device&) {
  throw io::Error("--distributed", "this neuroseg was built without Gloo (apt install libgloo-dev, then rebuild)");
}
int ProcessGroup::rank() const { return 0; }
int ProcessGroup::world_size() const { return 1; }
void ProcessGroup::broadcast(const std::vector<at::Tensor>&, int) {}
void ProcessGroup::allreduce_sum(const std::vector<at::Tensor>&, int64_t) {}
std::vector<double> ProcessGroup::sum_values(std::vector<double> values) { return values; }
void ProcessGroup::barrier() {}

#endif

ProcessGroup::ProcessGroup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProcessGroup::~ProcessGroup() = default;

}  // namespace neuroseg::pipelines
