#include "metrics/overlap.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "io/error.h"

namespace neuroseg::metrics {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Label images come as uint8 .. int64 (uint16 as kUInt16, which ATen's dispatch macros do
// not cover); integral types are read as they are, anything else as int32.
at::Tensor as_label_tensor(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kByte: case at::kChar: case at::kShort: case at::kInt: case at::kLong: case at::kBool:
      return t.contiguous();
    default:
      if (t.is_floating_point()) {
        const at::Tensor r = t.round();
        TORCH_CHECK(at::equal(r, t), "label images must hold integers");
      }
      return t.to(at::kInt).contiguous();
  }
}

// Dense lookup value -> index into `labels` (or -1) over [lo, hi], the value range of both.
struct LabelIndex {
  int64_t lo = 0;
  std::vector<int32_t> lut;
  LabelIndex(int64_t lo_, int64_t hi_, const std::vector<int64_t>& labels) : lo(lo_) {
    lut.assign(static_cast<size_t>(hi_ - lo_ + 1), -1);
    for (size_t i = 0; i < labels.size(); ++i)
      if (labels[i] >= lo_ && labels[i] <= hi_) lut[static_cast<size_t>(labels[i] - lo_)] = static_cast<int32_t>(i);
  }
};

constexpr int64_t kMaxDenseRange = int64_t{1} << 24;

// Smallest and largest value of an integer label tensor, without a widened copy of it.
std::pair<int64_t, int64_t> value_range(const at::Tensor& t) {
  const auto [lo, hi] = at::aminmax(t.scalar_type() == at::kBool ? t.view(at::kByte) : t);
  return {lo.item<int64_t>(), hi.item<int64_t>()};
}

}  // namespace

std::vector<int64_t> present_labels(const at::Tensor& labels_in) {
  if (labels_in.numel() == 0) return {};
  const at::Tensor t = as_label_tensor(labels_in);
  std::vector<int64_t> out;
  const auto range = value_range(t);
  const int64_t lo = range.first, hi = range.second;
  if (t.is_cuda() || hi - lo >= kMaxDenseRange) {
    const at::Tensor u = std::get<0>(at::_unique(t.flatten(), /*sorted=*/true)).to(at::kLong).cpu();
    for (int64_t i = 0; i < u.numel(); ++i)
      if (u[i].item<int64_t>() != 0) out.push_back(u[i].item<int64_t>());
    return out;
  }
  std::vector<uint8_t> seen(static_cast<size_t>(hi - lo + 1), 0);
  AT_DISPATCH_INTEGRAL_TYPES_AND(at::kBool, t.scalar_type(), "present_labels", [&] {
    const scalar_t* p = t.data_ptr<scalar_t>();
    const int64_t n = t.numel();
    for (int64_t i = 0; i < n; ++i) seen[static_cast<size_t>(static_cast<int64_t>(p[i]) - lo)] = 1;
  });
  for (int64_t v = lo; v <= hi; ++v)
    if (v != 0 && seen[static_cast<size_t>(v - lo)]) out.push_back(v);
  return out;
}

std::vector<LabelCounts> label_counts(const at::Tensor& pred_in, const at::Tensor& ref_in,
                                      const std::vector<int64_t>& labels) {
  TORCH_CHECK(pred_in.sizes() == ref_in.sizes(), "label_counts: prediction ", pred_in.sizes(), " and reference ",
              ref_in.sizes(), " differ in shape");
  std::vector<LabelCounts> out(labels.size());
  const int64_t n = pred_in.numel();
  if (labels.empty() || n == 0) return out;
  at::Tensor pred = as_label_tensor(pred_in), ref = as_label_tensor(ref_in);
  if (pred.scalar_type() != ref.scalar_type()) {
    pred = pred.to(at::kInt);
    ref = ref.to(at::kInt);
  }
  const auto [plo, phi] = value_range(pred);
  const auto [rlo, rhi] = value_range(ref);
  const int64_t lo = std::min(plo, rlo), hi = std::max(phi, rhi);

  if (pred.is_cuda() || hi - lo >= kMaxDenseRange) {
    // Device path: three reductions per label, queued, one transfer at the end.
    std::vector<at::Tensor> sums;
    for (int64_t l : labels) {
      const at::Tensor p = pred == l, r = ref == l;
      sums.push_back((p & r).sum());
      sums.push_back(p.sum());
      sums.push_back(r.sum());
    }
    const at::Tensor s = at::stack(sums).to(at::kLong).cpu();
    const int64_t* v = s.data_ptr<int64_t>();
    for (size_t i = 0; i < labels.size(); ++i) {
      out[i].tp = v[3 * i];
      out[i].fp = v[3 * i + 1] - v[3 * i];
      out[i].fn = v[3 * i + 2] - v[3 * i];
      out[i].tn = n - out[i].tp - out[i].fp - out[i].fn;
    }
    return out;
  }

  // CPU: one pass; each thread counts into its own rows (tp, fp, fn per label), summed after.
  const LabelIndex index(lo, hi, labels);
  const int64_t L = static_cast<int64_t>(labels.size());
  const int threads = at::get_num_threads();
  std::vector<int64_t> rows(static_cast<size_t>(threads) * 3 * L, 0);
  AT_DISPATCH_INTEGRAL_TYPES_AND(at::kBool, pred.scalar_type(), "label_counts", [&] {
    const scalar_t* p = pred.data_ptr<scalar_t>();
    const scalar_t* r = ref.data_ptr<scalar_t>();
    const int32_t* lut = index.lut.data();
    at::parallel_for(0, n, 1 << 20, [&](int64_t b, int64_t e) {
      int64_t* row = rows.data() + static_cast<size_t>(at::get_thread_num()) * 3 * L;
      for (int64_t i = b; i < e; ++i) {
        const int32_t pi = lut[static_cast<int64_t>(p[i]) - lo];
        const int32_t ri = lut[static_cast<int64_t>(r[i]) - lo];
        if (pi == ri) {
          if (pi >= 0) ++row[3 * pi];
          continue;
        }
        if (pi >= 0) ++row[3 * pi + 1];
        if (ri >= 0) ++row[3 * ri + 2];
      }
    });
  });
  for (int t = 0; t < threads; ++t)
    for (int64_t i = 0; i < L; ++i) {
      const int64_t* row = rows.data() + static_cast<size_t>(t) * 3 * L;
      out[i].tp += row[3 * i];
      out[i].fp += row[3 * i + 1];
      out[i].fn += row[3 * i + 2];
    }
  for (auto& c : out) c.tn = n - c.tp - c.fp - c.fn;
  return out;
}

LabelBox LabelBox::merged(const LabelBox& o) const {
  if (empty()) return o;
  if (o.empty()) return *this;
  LabelBox b;
  for (int a = 0; a < 3; ++a) {
    b.lo[a] = std::min(lo[a], o.lo[a]);
    b.hi[a] = std::max(hi[a], o.hi[a]);
  }
  return b;
}

std::vector<LabelBox> label_boxes(const at::Tensor& image_in, const std::vector<int64_t>& labels) {
  TORCH_CHECK(image_in.dim() == 3, "label_boxes: a (D, H, W) image");
  std::vector<LabelBox> out(labels.size());
  if (labels.empty() || image_in.numel() == 0) return out;
  const at::Tensor t = as_label_tensor(image_in.cpu());
  const auto [t_lo, t_hi] = value_range(t);
  const int64_t lo = std::min(t_lo, *std::min_element(labels.begin(), labels.end()));
  const int64_t hi = std::max(t_hi, *std::max_element(labels.begin(), labels.end()));
  if (hi - lo >= kMaxDenseRange) {
    for (size_t i = 0; i < labels.size(); ++i) {
      const at::Tensor idx = (t == labels[i]).nonzero();
      if (idx.size(0) == 0) continue;
      for (int a = 0; a < 3; ++a) {
        out[i].lo[a] = idx.select(1, a).min().item<int64_t>();
        out[i].hi[a] = idx.select(1, a).max().item<int64_t>();
      }
    }
    return out;
  }
  const LabelIndex index(lo, hi, labels);
  const int64_t D = t.size(0), H = t.size(1), W = t.size(2);
  // Threads own z-slabs and keep their own boxes, merged after.
  const int threads = at::get_num_threads();
  std::vector<std::vector<LabelBox>> partial(static_cast<size_t>(threads), std::vector<LabelBox>(labels.size()));
  AT_DISPATCH_INTEGRAL_TYPES_AND(at::kBool, t.scalar_type(), "label_boxes", [&] {
    const scalar_t* p = t.data_ptr<scalar_t>();
    at::parallel_for(0, D, 1, [&](int64_t z0, int64_t z1) {
      auto& boxes = partial[static_cast<size_t>(at::get_thread_num())];
      for (int64_t z = z0; z < z1; ++z)
        for (int64_t y = 0; y < H; ++y) {
          const scalar_t* row = p + (z * H + y) * W;
          for (int64_t x = 0; x < W; ++x) {
            const int32_t i = index.lut[static_cast<size_t>(static_cast<int64_t>(row[x]) - lo)];
            if (i < 0) continue;
            LabelBox& b = boxes[static_cast<size_t>(i)];
            if (b.empty()) {
              b.lo = {z, y, x};
              b.hi = {z, y, x};
              continue;
            }
            b.lo[0] = std::min(b.lo[0], z); b.hi[0] = std::max(b.hi[0], z);
            b.lo[1] = std::min(b.lo[1], y); b.hi[1] = std::max(b.hi[1], y);
            b.lo[2] = std::min(b.lo[2], x); b.hi[2] = std::max(b.hi[2], x);
          }
        }
    });
  });
  for (const auto& boxes : partial)
    for (size_t i = 0; i < labels.size(); ++i) out[i] = out[i].merged(boxes[i]);
  return out;
}

OverlapMetrics overlap_metrics(const LabelCounts& c) {
  auto ratio = [](double a, double b) { return b > 0 ? a / b : kNaN; };
  const double tp = static_cast<double>(c.tp), fp = static_cast<double>(c.fp), fn = static_cast<double>(c.fn);
  return {ratio(2 * tp, 2 * tp + fp + fn), ratio(tp, tp + fp + fn), ratio(tp, tp + fp), ratio(tp, tp + fn),
          ratio(static_cast<double>(c.n_pred() - c.n_ref()), static_cast<double>(c.n_ref()))};
}

}  // namespace neuroseg::metrics
