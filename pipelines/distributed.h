#pragma once
// Data-parallel training on PyTorch's c10d (docs/distributed.md). LibTorch has no C++
// DistributedDataParallel, but it ships c10d's TCPStore and process groups: one process per
// device joins a group through the store (rendezvous from torchrun's or SLURM's variables),
// rank 0's weights are broadcast, and after every backward the gradients are summed across
// ranks in flat buckets. Gloo on CPUs (Gloo's headers from Debian's libgloo-dev, its code in
// libtorch_cpu), NCCL on CUDA devices (ProcessGroupNCCL in libtorch_cuda, nccl.h from the
// wheel's nvidia-nccl package).
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace neuroseg::pipelines {

struct Rendezvous {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string source = "single";  ///< "torchrun" (RANK, WORLD_SIZE, ...), "slurm" or "single"

  /// torchrun's RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT when RANK is set, else
  /// SLURM's SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID (with MASTER_ADDR, or
  /// SLURM_LAUNCH_NODE_IPADDR, and MASTER_PORT or 29500) when SLURM_PROCID is set, else a
  /// single process. A missing or malformed variable is an io::Error naming it.
  static Rendezvous from_environment();
};

/// A c10d process group joined through a TCPStore served by rank 0.
class ProcessGroup {
 public:
  /// Joins (blocks until every rank has arrived, or the timeout): NCCL when `device` is a
  /// GPU, Gloo otherwise. Throws io::Error when this build lacks that backend.
  static std::unique_ptr<ProcessGroup> join(const Rendezvous& r, const c10::Device& device);
  ~ProcessGroup();

  int rank() const;
  int world_size() const;
  /// Rank `root`'s values into every rank's tensors, in place (any device).
  void broadcast(const std::vector<at::Tensor>& tensors, int root = 0);
  /// Sums the tensors across ranks in place. They are packed into flat float32 buckets of
  /// about `bucket_bytes` on the collective's device (one collective per bucket, all in
  /// flight at once) and unpacked.
  void allreduce_sum(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes = 25 << 20);
  /// Sums scalars across ranks (e.g. loss sums, validation Dice sums and counts).
  std::vector<double> sum_values(std::vector<double> values);
  void barrier();

 private:
  struct Impl;
  explicit ProcessGroup(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Sample indices [first, last) of a global batch of `batch` that rank `rank` of `world`
/// owns: contiguous, sizes differing by at most one, together exactly 0 .. batch - 1.
std::pair<int64_t, int64_t> batch_share(int64_t batch, int rank, int world);

/// Whether this build can run distributed training (Gloo or NCCL headers were found).
bool distributed_available();

}  // namespace neuroseg::pipelines
