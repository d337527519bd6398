// The source-free adaptation loss (Bateson et al.'s EntKLProp) against values computed by
// hand, its gradient against finite differences, and tent's entropy.
#include <doctest/doctest.h>

#include <cmath>

#include <ATen/ATen.h>

#include "io/orientation.h"
#include "losses/entropy_kl.h"
#include "pipelines/adapt.h"

using namespace neuroseg;

TEST_SUITE("losses_sfda") {
  TEST_CASE("entropy-kl on two pixels by hand") {
    // Pixel 1: logits (0, 0) -> s = (0.5, 0.5); pixel 2: (0, ln 3) -> s = (0.25, 0.75).
    // l[0, c, p]: class 0 = (0, 0), class 1 = (0, ln 3)
    const at::Tensor l = at::tensor({0.0, 0.0, 0.0, std::log(3.0)}, at::kDouble).view({1, 2, 2});
    losses::EntropyKLOptions o;
    o.class_weights = {0.1, 0.9};
    // Weighted entropy: [1.0 * 0.5 ln 2 + 0.1 * 0.25 ln 4 + 0.9 * 0.75 ln(4/3)] / 2 pixels.
    const double entropy = (0.5 * std::log(2.0) + 0.1 * 0.25 * std::log(4.0) + 0.9 * 0.75 * std::log(4.0 / 3.0)) / 2.0;
    // Max-normalised sizes: pixel 1 (1, 1), pixel 2 (1/3, 1) -> (4/3, 2) -> ratio (0.4, 0.6).
    const double kl = 0.4 * std::log(0.4 / 0.8) + 0.6 * std::log(0.6 / 0.2);
    const at::Tensor prior = at::tensor({0.8, 0.2}, at::kDouble).view({1, 2});
    CHECK(losses::entropy_kl_loss(l, prior, o).item<double>() == doctest::Approx(entropy + kl).epsilon(1e-8));
    o.lambda_prior = 0;
    CHECK(losses::entropy_kl_loss(l, prior, o).item<double>() == doctest::Approx(entropy).epsilon(1e-8));
    // A prior equal to the predicted ratio leaves only the entropy.
    o.lambda_prior = 1;
    CHECK(losses::entropy_kl_loss(l, at::tensor({0.4, 0.6}, at::kDouble).view({1, 2}), o).item<double>() ==
          doctest::Approx(entropy).epsilon(1e-8));
    // Size power 2: pixel 2 gives (1/9, 1) -> (10/9, 2) -> ratio (5/14, 9/14).
    o.size_power = 2;
    const double kl2 = 5.0 / 14 * std::log(5.0 / 14 / 0.8) + 9.0 / 14 * std::log(9.0 / 14 / 0.2);
    CHECK(losses::entropy_kl_loss(l, prior, o).item<double>() == doctest::Approx(entropy + kl2).epsilon(1e-8));
  }

  TEST_CASE("entropy-kl gradient equals finite differences; tent's entropy is the mean softmax entropy") {
    at::manual_seed(4);
    const at::Tensor x = at::randn({2, 3, 3, 2, 2}, at::kDouble).requires_grad_(true);
    const at::Tensor prior = at::softmax(at::randn({2, 3}, at::kDouble), 1);
    for (const double power : {1.0, 2.0}) {
      CAPTURE(power);
      losses::EntropyKLOptions o;
      o.class_weights = {0.1, 0.5, 0.9};
      o.size_power = power;
      x.mutable_grad() = at::Tensor();
      losses::entropy_kl_loss(x, prior, o).backward();
      const at::Tensor g = x.grad().reshape({-1});
      at::Tensor flat = x.detach().clone().reshape({-1});
      double worst = 0;
      for (int64_t i = 0; i < flat.numel(); ++i) {
        const double h = 1e-6, keep = flat[i].item<double>();
        flat[i] = keep + h;
        const double up = losses::entropy_kl_loss(flat.view(x.sizes()), prior, o).item<double>();
        flat[i] = keep - h;
        const double down = losses::entropy_kl_loss(flat.view(x.sizes()), prior, o).item<double>();
        flat[i] = keep;
        worst = std::max(worst, std::abs((up - down) / (2 * h) - g[i].item<double>()));
      }
      CHECK(worst < 1e-7);
    }
    const at::Tensor s = at::softmax(x.detach(), 1);
    CHECK(losses::entropy_loss(x).item<double>() == doctest::Approx((-(s * s.log()).sum(1)).mean().item<double>()));
  }

  TEST_CASE("a volume-level prior: over-estimated foreground, diluted by the patch's padding") {
    // Fractions 0.7 / 0.2 / 0.1, foreground × 1.5 -> 0.3 / 0.15, background 0.55; a patch the
    // volume fills to 80 % holds 0.24 / 0.12 of foreground and 0.64 background (padding).
    const at::Tensor p = pipelines::region_prior({0.7, 0.2, 0.1}, at::tensor({1.0, 0.8}, at::kDouble), {}, 1.5);
    REQUIRE(p.sizes() == at::IntArrayRef({2, 3}));
    const double expected[2][3] = {{0.55, 0.3, 0.15}, {0.64, 0.24, 0.12}};
    for (int i = 0; i < 2; ++i)
      for (int k = 0; k < 3; ++k) CHECK(p[i][k].item<double>() == doctest::Approx(expected[i][k]).epsilon(1e-12));
    // Over-estimation past the whole volume: background 0, the foreground renormalised.
    const at::Tensor q = pipelines::region_prior({0.2, 0.5, 0.3}, at::tensor({1.0}, at::kDouble), {}, 2.0);
    CHECK(q[0][0].item<double>() == doctest::Approx(0.0));
    CHECK(q[0][1].item<double>() == doctest::Approx(0.625));
  }

  TEST_CASE("a slice-tag prior: an untagged class gets 0, its share goes to background") {
    // Fractions 0.7 / 0.2 / 0.1 × 1.5 -> 0.3 / 0.15 on a slice with both classes; class 2 not
    // tagged: 0.3 / 0, background 0.7; nothing tagged and half padding: background 1.
    const at::Tensor tags = at::tensor({1.0, 1.0, 1.0, 0.0, 0.0, 0.0}, at::kDouble).view({3, 2});
    const at::Tensor p = pipelines::region_prior({0.7, 0.2, 0.1}, at::tensor({1.0, 1.0, 0.5}, at::kDouble), tags, 1.5);
    const double expected[3][3] = {{0.55, 0.3, 0.15}, {0.7, 0.3, 0.0}, {1.0, 0.0, 0.0}};
    for (int i = 0; i < 3; ++i)
      for (int k = 0; k < 3; ++k) CHECK(p[i][k].item<double>() == doctest::Approx(expected[i][k]).epsilon(1e-12));
  }

  TEST_CASE("slice tags follow their slices through reorientation and resampling") {
    // Input (x, y, z) = (4, 3, 6), LPS identity; tags along k (z). Reoriented to "IPL", the
    // network's x runs along -z: network x = 5 - k, the (D, H, W) dimension 2.
    io::Volume v;
    v.data = at::zeros({1, 6, 3, 4});
    const std::vector<std::vector<uint8_t>> tags{{1, 1, 0, 0, 0, 1}, {0, 0, 0, 1, 0, 0}};
    pipelines::Preprocessing pp;
    pp.orientation = "IPL";
    pp.normalization.scheme = "none";
    int64_t dim = -1;
    at::Tensor code = pipelines::slice_tag_codes(tags, 2, v.geometry, pipelines::prepare_case(v, pp), dim);
    CHECK(dim == 2);
    REQUIRE(code.sizes() == at::IntArrayRef({4, 3, 6}));
    const int expected[6] = {1 | 2, 1, 1 | 4, 1, 1 | 2, 1 | 2};  // bit 0 inside, bit 1 class 1, bit 2 class 2
    for (int x = 0; x < 6; ++x) {
      CHECK(code[0][0][x].item<int>() == expected[x]);
      CHECK(code[3][2][x].item<int>() == expected[x]);
    }
    // Resampled to 3 mm along z (input orientation kept; the grid keeps the extent, so network
    // slice s is centred on input z = 1 + 3 s).
    pp.orientation = "";
    pp.target_spacing = std::array<double, 3>{1.0, 1.0, 3.0};
    code = pipelines::slice_tag_codes(tags, 2, v.geometry, pipelines::prepare_case(v, pp), dim);
    CHECK(dim == 0);
    REQUIRE(code.size(0) == 2);
    CHECK(code[0][1][1].item<int>() == (1 | 2));
    CHECK(code[1][1][1].item<int>() == 1);  // z = 4: neither class (class 2 is at z = 3)
  }
}
