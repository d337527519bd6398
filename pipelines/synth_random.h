#pragma once
// Random numbers for the synthetic data generators (synth_fisbe, synth_spine). Our own
// distributions, not <random>'s: std::uniform_real_distribution and friends are
// implementation-defined, and a generated file must have the same bytes for a seed on every
// standard library. Per-voxel noise uses a counter-based hash of (stream, voxel index), so it
// does not depend on which thread computes which voxel.
#include <cmath>
#include <cstdint>

namespace neuroseg::pipelines::synth {

/// SplitMix64's finaliser: a bijective 64-bit mix (Steele, Lea & Flood 2014).
inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// A seed for a named sub-stream of `seed` (e.g. per sample, per purpose).
inline uint64_t substream(uint64_t seed, uint64_t a, uint64_t b = 0) { return mix64(mix64(seed ^ mix64(a)) + b); }

/// Approximately standard normal from one 64-bit hash: the sum of four 16-bit uniforms
/// (Irwin-Hall, variance 4/12), centred and scaled; tails end at +-3.46 (fine for noise).
inline float hash_normal(uint64_t h) {
  const uint32_t s = static_cast<uint32_t>(h & 0xFFFF) + static_cast<uint32_t>((h >> 16) & 0xFFFF) +
                     static_cast<uint32_t>((h >> 32) & 0xFFFF) + static_cast<uint32_t>(h >> 48);
  return (static_cast<float>(s) * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
}

/// Sequential generator (SplitMix64) with the few distributions the generators need.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() { return mix64(state_ += 0x9E3779B97F4A7C15ull); }
  /// Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Uniform integer in [lo, hi] (inclusive).
  int64_t integer(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(uniform() * static_cast<double>(hi - lo + 1));
  }
  bool chance(double p) { return uniform() < p; }
  /// Standard normal (Box-Muller).
  double normal() {
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  uint64_t state_;
};

}  // namespace neuroseg::pipelines::synth
