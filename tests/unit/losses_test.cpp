// The losses of losses/: each against its formula on cases small enough to compute by hand,
// against PyTorch's own ops where one exists, gradients against central differences in
// float64, finiteness under autocast and with extreme logits, the factory's strictness and
// the training config's "loss" key.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "io/volume_io.h"
#include "losses/cl_dice.h"
#include "losses/cross_entropy.h"
#include "losses/dice_ce.h"
#include "losses/loss_factory.h"
#include "losses/tversky.h"
#include "pipelines/autocast_guard.h"
#include "pipelines/train.h"
#include "support/test_support.h"

using namespace neuroseg;
using nlohmann::json;

namespace {

// Two samples of two voxels, two classes, given by the class-1 probability q of each voxel:
// logits (log(1 - q), log q) have softmax exactly (1 - q, q).
//   sample 0: q = 0.9, 0.4 with targets 1, 0
//   sample 1: q = 0.2, 0.7 with targets 1, 1
const double kQ[2][2] = {{0.9, 0.4}, {0.2, 0.7}};
const int64_t kT[2][2] = {{1, 0}, {1, 1}};

at::Tensor tiny_logits(at::ScalarType dtype = at::kDouble) {
  at::Tensor x = at::empty({2, 2, 1, 1, 2}, at::kDouble);
  for (int n = 0; n < 2; ++n)
    for (int v = 0; v < 2; ++v) {
      x[n][0][0][0][v] = std::log(1 - kQ[n][v]);
      x[n][1][0][0][v] = std::log(kQ[n][v]);
    }
  return x.to(dtype);
}

at::Tensor tiny_target() { return at::tensor({kT[0][0], kT[0][1], kT[1][0], kT[1][1]}, at::kLong).view({2, 1, 1, 2}); }

// Probability of class k at (n, v), and the one-hot target.
double prob(int n, int v, int k) { return k == 1 ? kQ[n][v] : 1 - kQ[n][v]; }
double onehot(int n, int v, int k) { return kT[n][v] == k ? 1.0 : 0.0; }

struct Sums {
  double tp = 0, p = 0, g = 0;
};
// Sums over the voxels of sample n (or of both samples, n = -1) for class k.
Sums sums(int n, int k) {
  Sums s;
  for (int i = 0; i < 2; ++i) {
    if (n >= 0 && i != n) continue;
    for (int v = 0; v < 2; ++v) {
      s.tp += prob(i, v, k) * onehot(i, v, k);
      s.p += prob(i, v, k);
      s.g += onehot(i, v, k);
    }
  }
  return s;
}

double dice_of(const Sums& s, double smooth) { return (2 * s.tp + smooth) / (s.p + s.g + smooth); }

double value(const at::Tensor& t) { return t.item<double>(); }

// Autograd gradient of f at x (float64) against central differences, element by element.
void check_gradient(const std::function<at::Tensor(const at::Tensor&)>& f, const at::Tensor& x0, const char* what) {
  INFO(what);
  at::Tensor x = x0.to(at::kDouble).clone().requires_grad_(true);
  const at::Tensor loss = f(x);
  REQUIRE((loss.scalar_type() == at::kDouble));
  loss.backward();
  const at::Tensor analytic = x.grad().flatten();
  at::Tensor probe = x0.to(at::kDouble).clone();
  at::Tensor flat = probe.view({-1});
  const double h = 1e-6;
  double worst = 0;
  for (int64_t i = 0; i < flat.numel(); ++i) {
    const double keep = flat[i].item<double>();
    flat[i] = keep + h;
    const double up = value(f(probe));
    flat[i] = keep - h;
    const double down = value(f(probe));
    flat[i] = keep;
    const double numeric = (up - down) / (2 * h);
    worst = std::max(worst, std::abs(analytic[i].item<double>() - numeric) / (1 + std::abs(numeric)));
  }
  CHECK(worst < 1e-6);
  CHECK(at::abs(analytic).max().item<double>() > 1e-4);  // the check saw a real gradient
}

json tiny_train_config(const testing::ScratchDir& dir) {
  const json pairs = json::array({json::array({dir.file("a_img.nii.gz"), dir.file("a_seg.nii.gz")})});
  return {{"data", {{"train", pairs}}},
          {"model", {{"name", "unet"}, {"args", {{"channels", {4, 8}}, {"out_channels", 2}, {"deep_supervision", true}}}}},
          {"labels", {{"background", 0}, {"ball", 1}}},
          {"patch_size", {8, 8, 8}},
          {"batch_size", 2},
          {"epochs", 1},
          {"iterations_per_epoch", 2},
          {"optimizer", {{"name", "sgd"}, {"lr", 0.02}}},
          {"workers", 1},
          {"seed", 3}};
}

}  // namespace

TEST_SUITE("losses") {
  TEST_CASE("soft Dice: batch or per sample, with or without background, by hand") {
    const at::Tensor x = tiny_logits(), t = tiny_target();
    for (const double smooth : {1e-5, 0.0}) {
      for (const bool batch : {true, false}) {
        for (const bool background : {false, true}) {
          CAPTURE(batch);
          CAPTURE(background);
          losses::DiceCEOptions o;
          o.batch_dice = batch;
          o.include_background = background;
          o.smooth = smooth;
          // Mean over the scored classes (and over the samples when not batch).
          double sum = 0;
          int count = 0;
          for (int n = batch ? -1 : 0; n < (batch ? 0 : 2); ++n)
            for (int k = background ? 0 : 1; k < 2; ++k) sum += dice_of(sums(n, k), smooth), ++count;
          CHECK(value(losses::soft_dice_loss(x, t, o)) == doctest::Approx(1 - sum / count).epsilon(1e-12));
        }
      }
    }
    // The four settings differ, so each option is really applied.
    losses::DiceCEOptions a, b;
    b.batch_dice = false;
    CHECK(value(losses::soft_dice_loss(x, t, a)) != doctest::Approx(value(losses::soft_dice_loss(x, t, b))));
    b = a;
    b.include_background = true;
    CHECK(value(losses::soft_dice_loss(x, t, a)) != doctest::Approx(value(losses::soft_dice_loss(x, t, b))));
  }

  TEST_CASE("weighted cross-entropy: by hand and against at::cross_entropy_loss") {
    const at::Tensor x = tiny_logits(), t = tiny_target();
    losses::CrossEntropyOptions o;
    o.class_weights = {0.3, 2.0};
    double num = 0, den = 0;
    for (int n = 0; n < 2; ++n)
      for (int v = 0; v < 2; ++v) {
        const int k = static_cast<int>(kT[n][v]);
        num += o.class_weights[k] * -std::log(prob(n, v, k));
        den += o.class_weights[k];
      }
    CHECK(value(losses::cross_entropy_loss(x, t, o)) == doctest::Approx(num / den).epsilon(1e-12));

    at::manual_seed(0);
    const at::Tensor logits = at::randn({2, 3, 3, 4, 5}) * 3;
    at::Tensor target = at::randint(0, 3, {2, 3, 4, 5}, at::kLong);
    const at::Tensor w = at::tensor({0.2, 1.0, 3.5}, at::kFloat);
    o.class_weights = {0.2, 1.0, 3.5};
    CHECK(value(losses::cross_entropy_loss(logits, target, o)) ==
          doctest::Approx(value(at::cross_entropy_loss(logits, target, w))).epsilon(1e-5));
    CHECK(value(losses::cross_entropy_loss(logits, target)) ==
          doctest::Approx(value(at::cross_entropy_loss(logits, target))).epsilon(1e-5));
    // ignore_index, as PyTorch's.
    target.index_put_({at::rand({2, 3, 4, 5}) < 0.3}, 255);
    o.ignore_index = 255;
    CHECK(value(losses::cross_entropy_loss(logits, target, o)) ==
          doctest::Approx(value(at::cross_entropy_loss(logits, target, w, at::Reduction::Mean, 255))).epsilon(1e-5));
    // Everything ignored: 0 (PyTorch gives NaN), with a zero gradient.
    at::Tensor l = logits.clone().requires_grad_(true);
    const at::Tensor none = losses::cross_entropy_loss(l, at::full_like(target, 255), o);
    none.backward();
    CHECK(value(none) == 0.0);
    CHECK(at::all(l.grad() == 0).item<bool>());
    CHECK_THROWS_WITH(losses::cross_entropy_loss(logits, target.clamp(0, 2), {{1.0, 2.0}, std::nullopt}),
                      doctest::Contains("class_weights has 2 values but the logits have 3 classes"));
  }

  TEST_CASE("focal loss: by hand, gamma = 0 is cross-entropy, alpha per class") {
    const at::Tensor x = tiny_logits(), t = tiny_target();
    for (const double gamma : {2.0, 0.5, 1.0}) {
      losses::FocalOptions o;
      o.gamma = gamma;
      o.alpha = {0.25, 0.75};
      double sum = 0, plain = 0;
      for (int n = 0; n < 2; ++n)
        for (int v = 0; v < 2; ++v) {
          const int k = static_cast<int>(kT[n][v]);
          const double pt = prob(n, v, k), term = std::pow(1 - pt, gamma) * -std::log(pt);
          sum += o.alpha[k] * term;
          plain += term;
        }
      CAPTURE(gamma);
      CHECK(value(losses::focal_loss(x, t, o)) == doctest::Approx(sum / 4).epsilon(1e-12));
      o.alpha.clear();
      CHECK(value(losses::focal_loss(x, t, o)) == doctest::Approx(plain / 4).epsilon(1e-12));
    }
    CHECK(losses::FocalOptions().gamma == 2.0);

    at::manual_seed(1);
    const at::Tensor logits = at::randn({2, 4, 3, 4, 5}) * 3;
    const at::Tensor target = at::randint(0, 4, {2, 3, 4, 5}, at::kLong);
    losses::FocalOptions o;
    o.gamma = 0;
    CHECK(value(losses::focal_loss(logits, target, o)) ==
          doctest::Approx(value(at::cross_entropy_loss(logits, target))).epsilon(1e-5));
    // With alpha: the alpha-weighted sum over voxels divided by the voxel count.
    o.alpha = {0.1, 0.5, 1.0, 2.0};
    const at::Tensor sum = at::cross_entropy_loss(logits, target, at::tensor({0.1, 0.5, 1.0, 2.0}, at::kFloat), at::Reduction::Sum);
    CHECK(value(losses::focal_loss(logits, target, o)) == doctest::Approx(value(sum) / 120.0).epsilon(1e-5));
    // Focusing lowers the loss of well-classified voxels.
    o.gamma = 2;
    CHECK(value(losses::focal_loss(logits, target, o)) < value(sum) / 120.0);
  }

  TEST_CASE("Tversky: by hand; alpha = beta = 0.5 is soft Dice") {
    const at::Tensor x = tiny_logits(), t = tiny_target();
    for (const bool batch : {true, false}) {
      for (const bool background : {false, true}) {
        CAPTURE(batch);
        CAPTURE(background);
        losses::TverskyOptions o;  // alpha 0.3, beta 0.7
        o.batch_dice = batch;
        o.include_background = background;
        double sum = 0;
        int count = 0;
        for (int n = batch ? -1 : 0; n < (batch ? 0 : 2); ++n)
          for (int k = background ? 0 : 1; k < 2; ++k) {
            const Sums s = sums(n, k);
            const double fp = s.p - s.tp, fn = s.g - s.tp;
            sum += (s.tp + o.smooth) / (s.tp + 0.3 * fp + 0.7 * fn + o.smooth);
            ++count;
          }
        CHECK(value(losses::tversky_loss(x, t, o)) == doctest::Approx(1 - sum / count).epsilon(1e-12));
      }
    }
    // The hand numbers: batch, foreground: TP 1.8, FP 0.4, FN 1.2.
    CHECK(value(losses::tversky_loss(x, t)) == doctest::Approx(1 - 1.8 / (1.8 + 0.3 * 0.4 + 0.7 * 1.2)).epsilon(1e-6));

    at::manual_seed(2);
    const at::Tensor logits = at::randn({2, 3, 4, 4, 4}) * 2;
    const at::Tensor target = at::randint(0, 3, {2, 4, 4, 4}, at::kLong);
    for (const bool batch : {true, false}) {
      losses::TverskyOptions o;
      o.alpha = o.beta = 0.5;
      o.batch_dice = batch;
      losses::DiceCEOptions d;
      d.batch_dice = batch;
      CHECK(value(losses::tversky_loss(logits, target, o)) == doctest::Approx(value(losses::soft_dice_loss(logits, target, d))).epsilon(1e-5));
    }
  }

  TEST_CASE("soft morphology: erosion, dilation, and the skeleton of a thick bar is its centre line") {
    // A 3x3x3 cube in 5x5x5 erodes (6-neighbourhood) to its centre; a voxel dilates to a 3x3x3 cube.
    at::Tensor cube = at::zeros({1, 1, 5, 5, 5});
    cube.slice(2, 1, 4).slice(3, 1, 4).slice(4, 1, 4).fill_(1);
    at::Tensor centre = at::zeros({1, 1, 5, 5, 5});
    centre[0][0][2][2][2] = 1;
    CHECK(at::equal(losses::soft_erode(cube), centre));
    CHECK(at::equal(losses::soft_dilate(centre), cube));
    // Erosion with the cross keeps a voxel whose 6 face neighbours are set, even if corners are not.
    at::Tensor cross = centre.clone();
    cross[0][0][1][2][2] = cross[0][0][3][2][2] = cross[0][0][2][1][2] = cross[0][0][2][3][2] = cross[0][0][2][2][1] =
        cross[0][0][2][2][3] = 1;
    CHECK(value(losses::soft_erode(cross)[0][0][2][2][2]) == 1.0);
    CHECK(value(losses::soft_erode(cross).sum()) == 1.0);
    // The borders do not erode: a full volume stays full.
    CHECK(at::equal(losses::soft_erode(at::ones({1, 1, 3, 4, 5})), at::ones({1, 1, 3, 4, 5})));
    // Soft values: min / max over the neighbourhoods.
    at::Tensor ramp = at::arange(5, at::kFloat).view({1, 1, 1, 1, 5}) / 4;
    CHECK(at::allclose(losses::soft_erode(ramp).flatten(), at::tensor({0.0f, 0.0f, 0.25f, 0.5f, 0.75f})));
    CHECK(at::allclose(losses::soft_dilate(ramp).flatten(), at::tensor({0.25f, 0.5f, 0.75f, 1.0f, 1.0f})));

    // A bar of 5x5 cross-section along x through a 9x9x12 volume: 3 iterations thin it to
    // the centre line, exactly (erosion 5 -> 3 -> 1 -> nothing).
    at::Tensor bar = at::zeros({1, 1, 9, 9, 12});
    bar.slice(2, 2, 7).slice(3, 2, 7).fill_(1);
    const at::Tensor skel = losses::soft_skeleton(bar, 3);
    at::Tensor line = at::zeros_like(bar);
    line.slice(2, 4, 5).slice(3, 4, 5).fill_(1);
    CHECK(at::equal(skel, line));
    CHECK(value(bar.sum()) == 300);
    CHECK(value(skel.sum()) == 12);
    // Fewer iterations than the radius find nothing yet: the line appears at the 2nd erosion.
    CHECK(value(losses::soft_skeleton(bar, 1).sum()) == 0);
    CHECK(at::equal(losses::soft_skeleton(bar, 2), line));
    // 2D: a 5-wide band thins to its middle row; a 1-pixel line is its own skeleton.
    at::Tensor band = at::zeros({1, 1, 9, 10});
    band.slice(2, 2, 7).fill_(1);
    at::Tensor row = at::zeros_like(band);
    row.slice(2, 4, 5).fill_(1);
    CHECK(at::equal(losses::soft_skeleton(band, 3), row));
    CHECK(at::equal(losses::soft_skeleton(row, 3), row));
  }

  TEST_CASE("clDice: hand case on lines, perfect prediction ~0, combination with Dice") {
    // 2D, one sample, target a horizontal line of 7 pixels; the prediction misses 2 of them
    // and adds an isolated pixel. Lines and isolated pixels are their own skeletons:
    // Tprec = (5 + 1) / (6 + 1), Tsens = (5 + 1) / (7 + 1).
    at::Tensor target = at::zeros({1, 5, 7}, at::kLong);
    target.select(1, 2).fill_(1);
    at::Tensor pred = target.clone();
    pred[0][2][1] = 0;
    pred[0][2][4] = 0;
    pred[0][0][3] = 1;
    const at::Tensor fg = pred.to(at::kDouble) * 2 - 1;  // +-1 -> logits +-30 per class
    const at::Tensor logits = at::stack({-30 * fg, 30 * fg}, 1);
    const double tprec = 6.0 / 7.0, tsens = 6.0 / 8.0;
    const double expected = 1 - 2 * tprec * tsens / (tprec + tsens);
    CHECK(value(losses::soft_cldice_loss(logits, target)) == doctest::Approx(expected).epsilon(1e-9));
    // The same in 3D (a depth of 1 pools like 2D).
    CHECK(value(losses::soft_cldice_loss(logits.unsqueeze(2), target.unsqueeze(1))) == doctest::Approx(expected).epsilon(1e-9));
    // With the background: its skeleton is scored too, so the value changes.
    losses::ClDiceOptions bg;
    bg.include_background = true;
    CHECK(value(losses::soft_cldice_loss(logits, target, bg)) != doctest::Approx(expected));

    // Perfect, confident prediction of a tubular structure: ~0 for clDice and Dice + clDice.
    at::Tensor tube = at::zeros({2, 9, 9, 12}, at::kLong);
    tube.slice(1, 3, 6).slice(2, 3, 6).fill_(1);
    tube[1].slice(0, 0, 9).slice(1, 4, 5).fill_(1);  // sample 1 gets a crossing wall too
    const at::Tensor perfect = at::stack({(tube == 0).to(at::kFloat) * 20, (tube == 1).to(at::kFloat) * 20}, 1);
    CHECK(value(losses::soft_cldice_loss(perfect, tube)) == doctest::Approx(0).epsilon(1e-6));
    CHECK(value(losses::dice_cldice_loss(perfect, tube)) == doctest::Approx(0).epsilon(1e-6));
    // Empty foreground everywhere, predicted empty: also ~0 (s / s), and finite.
    const at::Tensor empty = at::zeros({1, 6, 6, 6}, at::kLong);
    const at::Tensor bg_logits = at::stack({at::full({1, 6, 6, 6}, 20.0f), at::zeros({1, 6, 6, 6})}, 1);
    CHECK(value(losses::soft_cldice_loss(bg_logits, empty)) == doctest::Approx(0).epsilon(1e-6));

    // (1 - alpha) Dice + alpha clDice.
    at::manual_seed(3);
    const at::Tensor x = at::randn({2, 3, 6, 7, 8}) * 3;
    const at::Tensor t = at::randint(0, 3, {2, 6, 7, 8}, at::kLong);
    losses::ClDiceOptions o;
    o.alpha = 0.3;
    o.batch_dice = false;
    losses::DiceCEOptions d;
    d.batch_dice = false;
    const double cl = value(losses::soft_cldice_loss(x, t, o));
    CHECK(value(losses::dice_cldice_loss(x, t, o)) == doctest::Approx(0.7 * value(losses::soft_dice_loss(x, t, d)) + 0.3 * cl).epsilon(1e-6));
    CHECK(cl > 0.05);  // random logits are far from the target
    CHECK(losses::ClDiceOptions().iterations == 3);
    CHECK(losses::ClDiceOptions().alpha == 0.5);
  }

  TEST_CASE("2D inputs equal 3D inputs of depth 1; shape errors name the loss") {
    at::manual_seed(4);
    const at::Tensor x = at::randn({2, 3, 5, 6}) * 2;
    const at::Tensor t = at::randint(0, 3, {2, 5, 6}, at::kLong);
    for (const auto& name : losses::loss_names()) {
      CAPTURE(name);
      const losses::LossFn f = losses::make_loss(name, json::object());
      CHECK(value(f(x, t)) == doctest::Approx(value(f(x.unsqueeze(2), t.unsqueeze(1)))).epsilon(1e-6));
    }
    CHECK_THROWS_WITH(losses::soft_dice_loss(x, t.unsqueeze(1)), doctest::Contains("dice loss: expects logits (N, K, D, H, W)"));
    CHECK_THROWS_WITH(losses::focal_loss(x, t.narrow(2, 0, 5)), doctest::Contains("focal loss: expects logits"));
    CHECK_THROWS_WITH(losses::cross_entropy_loss(x.to(at::kLong), t), doctest::Contains("floating-point logits"));
  }

  TEST_CASE("ignore_index drops voxels from every term") {
    at::manual_seed(5);
    const at::Tensor x = at::randn({1, 3, 4, 5, 6}) * 2;
    at::Tensor t = at::randint(0, 3, {1, 4, 5, 6}, at::kLong);
    const at::Tensor ignored = at::rand({1, 4, 5, 6}) < 0.3;
    t.index_put_({ignored}, 7);
    // The same voxels without the ignored ones, as a (1, 3, 1, 1, V) row.
    const at::Tensor keep = (~ignored).flatten().nonzero().squeeze(1);
    const at::Tensor xs = x.flatten(2).index_select(2, keep).view({1, 3, 1, 1, -1});
    const at::Tensor ts = t.flatten(1).index_select(1, keep).view({1, 1, 1, -1});
    losses::LossOptions o;
    o.ignore_index = 7;
    for (const char* name : {"dice_ce", "dice", "ce", "focal", "tversky", "dice_focal"}) {
      CAPTURE(name);
      o.name = name;
      losses::LossOptions plain = o;
      plain.ignore_index.reset();
      CHECK(value(losses::make_loss(o)(x, t)) == doctest::Approx(value(losses::make_loss(plain)(xs, ts))).epsilon(1e-5));
    }
    losses::FocalOptions f;
    f.ignore_index = 7;
    CHECK(value(losses::focal_loss(x, at::full_like(t, 7), f)) == 0.0);
  }

  TEST_CASE("gradients match central differences (float64)") {
    at::manual_seed(6);
    const at::Tensor x = at::randn({2, 3, 2, 3, 3}, at::kDouble) * 1.5;
    const at::Tensor t = at::randint(0, 3, {2, 2, 3, 3}, at::kLong);
    at::Tensor t_ignored = t.clone();
    t_ignored[0][0][0][0] = -1;
    t_ignored[1][1][2][1] = -1;
    losses::DiceCEOptions dice_sample;
    dice_sample.batch_dice = false;
    dice_sample.include_background = true;
    losses::CrossEntropyOptions ce{{0.5, 1.0, 2.0}, -1};
    losses::FocalOptions focal2{2.0, {0.25, 0.5, 1.0}, std::nullopt}, focal_half{0.5, {}, std::nullopt};
    losses::TverskyOptions tv;
    losses::ClDiceOptions cl;
    cl.iterations = 2;
    cl.smooth = 0.1;
    check_gradient([&](const at::Tensor& a) { return losses::soft_dice_loss(a, t); }, x, "dice");
    check_gradient([&](const at::Tensor& a) { return losses::soft_dice_loss(a, t, dice_sample); }, x, "dice per sample + background");
    check_gradient([&](const at::Tensor& a) { return losses::cross_entropy_loss(a, t_ignored, ce); }, x, "weighted CE, ignore");
    check_gradient([&](const at::Tensor& a) { return losses::dice_ce_loss(a, t); }, x, "dice_ce");
    check_gradient([&](const at::Tensor& a) { return losses::focal_loss(a, t, focal2); }, x, "focal gamma 2, alpha");
    check_gradient([&](const at::Tensor& a) { return losses::focal_loss(a, t, focal_half); }, x, "focal gamma 0.5");
    check_gradient([&](const at::Tensor& a) { return losses::tversky_loss(a, t, tv); }, x, "tversky");
    check_gradient([&](const at::Tensor& a) { return losses::dice_cldice_loss(a, t, cl); }, x, "dice + cldice");
    check_gradient([&](const at::Tensor& a) { return losses::soft_cldice_loss(a.squeeze(2), t.select(1, 0), cl); },
                   x.narrow(2, 0, 1), "cldice 2D");
  }

  TEST_CASE("float32 under autocast, finite with extreme logits, all-one-class and empty targets") {
    at::manual_seed(7);
    const std::vector<int64_t> shape{2, 3, 4, 5, 6};
    const at::Tensor signs = at::randint(0, 2, shape).to(at::kFloat) * 2 - 1;
    const at::Tensor extreme = signs * 1e4;
    const at::Tensor mixed = at::randint(0, 3, {2, 4, 5, 6}, at::kLong);
    const std::vector<at::Tensor> targets{mixed, at::zeros({2, 4, 5, 6}, at::kLong), at::full({2, 4, 5, 6}, 2, at::kLong)};
    for (const auto& name : losses::loss_names()) {
      const losses::LossFn f = losses::make_loss(name, json::object());
      for (const auto& target : targets) {
        for (const at::ScalarType dtype : {at::kHalf, at::kBFloat16, at::kFloat}) {
          CAPTURE(name);
          CAPTURE(dtype);
          const at::Tensor ref = f(extreme.to(dtype).to(at::kFloat), target);
          REQUIRE(std::isfinite(value(ref)));
          for (const at::ScalarType amp : {at::kBFloat16, at::kHalf}) {
            CAPTURE(amp);
            at::Tensor logits = extreme.to(dtype).clone().requires_grad_(true);
            at::Tensor loss;
            {
              pipelines::AutocastGuard guard(c10::kCPU, amp);
              loss = f(logits, target);
            }
            CHECK((loss.scalar_type() == at::kFloat));
            CHECK(value(loss) == doctest::Approx(value(ref)).epsilon(1e-6));
            loss.backward();
            CHECK((logits.grad().scalar_type() == dtype));
            CHECK(at::isfinite(logits.grad()).all().item<bool>());
          }
        }
      }
    }
    // The limits: confidently right is 0, confidently wrong is the logit gap for CE and focal.
    const at::Tensor t = at::randint(0, 3, {1, 2, 2, 2}, at::kLong);
    const at::Tensor right = (at::one_hot(t, 3).permute({0, 4, 1, 2, 3}).to(at::kHalf) * 2 - 1) * 1e4;
    CHECK(value(losses::cross_entropy_loss(right, t)) == 0.0);
    CHECK(value(losses::focal_loss(right, t)) == 0.0);
    CHECK(value(losses::soft_dice_loss(right, t)) == doctest::Approx(0).epsilon(1e-6));
    // log p_t = -1e4 - (1e4 + log 2): two wrong classes share the mass.
    CHECK(value(losses::cross_entropy_loss(-right, t)) == doctest::Approx(2e4 + std::log(2.0)).epsilon(1e-6));
    CHECK(value(losses::focal_loss(-right, t)) == doctest::Approx(2e4 + std::log(2.0)).epsilon(1e-6));

    // A network under bf16 autocast: the conv runs in bf16, the loss in float32, and the
    // weights get finite float32 gradients.
    at::Tensor weight = (at::randn({3, 1, 3, 3, 3}) * 0.3).requires_grad_(true);
    const at::Tensor image = at::randn({2, 1, 4, 5, 6}) * 1e3;
    at::Tensor loss, logits;
    {
      pipelines::AutocastGuard guard(c10::kCPU, at::kBFloat16);
      logits = at::conv3d(image, weight, {}, {1, 1, 1}, {1, 1, 1});
      loss = losses::make_loss("cldice", json::object())(logits, mixed);
    }
    CHECK((logits.scalar_type() == at::kBFloat16));
    CHECK((loss.scalar_type() == at::kFloat));
    loss.backward();
    CHECK((weight.grad().scalar_type() == at::kFloat));
    CHECK(at::isfinite(weight.grad()).all().item<bool>());
  }

  TEST_CASE("deep supervision works with any loss (nearest-downsampled targets, weights 1, 1/2, 1/4)") {
    at::manual_seed(8);
    const at::Tensor t = at::randint(0, 3, {2, 8, 8, 8}, at::kLong);
    const std::vector<at::Tensor> outputs{at::randn({2, 3, 8, 8, 8}), at::randn({2, 3, 4, 4, 4}), at::randn({2, 3, 2, 2, 2})};
    const auto every = [](const at::Tensor& a, int64_t s) { return a.slice(1, 0, {}, s).slice(2, 0, {}, s).slice(3, 0, {}, s); };
    for (const char* name : {"focal", "cldice", "tversky"}) {
      CAPTURE(name);
      const losses::LossFn f = losses::make_loss(name, json::object());
      const double expected = (value(f(outputs[0], t)) + 0.5 * value(f(outputs[1], every(t, 2))) +
                               0.25 * value(f(outputs[2], every(t, 4)))) / 1.75;
      CHECK(value(losses::deep_supervision_loss(outputs, t, f)) == doctest::Approx(expected).epsilon(1e-6));
    }
    // The Dice + CE overload is the generic one with dice_ce.
    CHECK(value(losses::deep_supervision_loss(outputs, t, losses::DiceCEOptions{})) ==
          doctest::Approx(value(losses::deep_supervision_loss(outputs, t, losses::make_loss("dice_ce", json::object())))));
    // 2D heads.
    const at::Tensor t2 = t.select(1, 0);
    const std::vector<at::Tensor> o2{outputs[0].select(2, 0), outputs[1].select(2, 0)};
    const losses::LossFn ce = losses::make_loss("ce", json::object());
    CHECK(value(losses::deep_supervision_loss(o2, t2, ce)) ==
          doctest::Approx((value(ce(o2[0], t2)) + 0.5 * value(ce(o2[1], t2.slice(1, 0, {}, 2).slice(2, 0, {}, 2)))) / 1.5).epsilon(1e-6));
  }

  TEST_CASE("make_loss: strict names and options") {
    CHECK(losses::loss_names() == std::vector<std::string>{"dice_ce", "dice", "ce", "focal", "tversky", "dice_focal", "cldice"});
    CHECK_THROWS_WITH(losses::make_loss("focl", json::object()), doctest::Contains("unknown loss 'focl'; did you mean 'focal'?"));
    CHECK_THROWS_WITH(losses::make_loss("focal", {{"gama", 2}}), doctest::Contains("unknown argument 'gama'; did you mean 'gamma'?"));
    CHECK_THROWS_WITH(losses::make_loss("dice", {{"gamma", 2}}), doctest::Contains("argument 'gamma': is not used by loss 'dice'"));
    CHECK_THROWS_WITH(losses::make_loss("tversky", {{"alpha", -1}}), doctest::Contains("argument 'alpha': must be >= 0"));
    CHECK_THROWS_WITH(losses::make_loss("cldice", {{"cldice_alpha", 1.5}}), doctest::Contains("must be <= 1"));
    CHECK_THROWS_WITH(losses::make_loss("ce", {{"class_weights", {0, 0}}}), doctest::Contains("at least one value > 0"));
    CHECK_THROWS_WITH(losses::make_loss("dice", {{"batch_dice", "yes"}}), doctest::Contains("expected true or false"));
    // The options reach the loss.
    const auto o = losses::LossOptions::from_json("tversky", {{"alpha", 0.5}, {"beta", 0.5}, {"batch_dice", false}});
    CHECK(o.alpha == 0.5);
    CHECK_FALSE(o.batch_dice);
    at::manual_seed(9);
    const at::Tensor x = at::randn({2, 2, 3, 4, 5}), t = at::randint(0, 2, {2, 3, 4, 5}, at::kLong);
    losses::DiceCEOptions d;
    d.batch_dice = false;
    CHECK(value(losses::make_loss(o)(x, t)) == doctest::Approx(value(losses::soft_dice_loss(x, t, d))).epsilon(1e-6));
    const auto f = losses::LossOptions::from_json("focal", {{"gamma", 0}, {"class_weights", {1, 3}}});
    CHECK(value(losses::make_loss(f)(x, t)) ==
          doctest::Approx(value(at::cross_entropy_loss(x, t, at::tensor({1.0f, 3.0f}), at::Reduction::Sum)) / 120).epsilon(1e-5));
    // dice_ce defaults are the nnU-Net loss as before.
    CHECK(value(losses::make_loss("dice_ce", json::object())(x, t)) == doctest::Approx(value(losses::dice_ce_loss(x, t))));
  }

  TEST_CASE("training config: the loss key is strict; focal trains 2 iterations with finite loss") {
    testing::ScratchDir dir("losses_train");
    testing::write_ball_case(dir, "a", 8, 12, 12, 6, 3, 1);
    json c = tiny_train_config(dir);
    CHECK(pipelines::TrainConfig::from_json(c, "").loss == "dice_ce");
    c["loss"] = "focl";
    CHECK_THROWS_WITH(pipelines::TrainConfig::from_json(c, ""),
                      doctest::Contains("config: argument 'loss': unknown value 'focl'; did you mean 'focal'?"));
    c["loss"] = "focal";
    c["loss_option"] = json::object();
    CHECK_THROWS_WITH(pipelines::TrainConfig::from_json(c, ""), doctest::Contains("did you mean 'loss_options'?"));
    c.erase("loss_option");
    c["loss_options"] = {{"gama", 1}};
    CHECK_THROWS_WITH(pipelines::TrainConfig::from_json(c, ""),
                      doctest::Contains("config loss_options: unknown argument 'gama'; did you mean 'gamma'?"));
    c["loss_options"] = {{"beta", 0.5}};
    CHECK_THROWS_WITH(pipelines::TrainConfig::from_json(c, ""), doctest::Contains("'beta': is not used by loss 'focal'"));
    c["loss_options"] = {{"class_weights", {1, 2, 3}}};
    CHECK_THROWS_WITH(pipelines::TrainConfig::from_json(c, ""), doctest::Contains("needs one value per label (2), got 3"));

    c["loss_options"] = {{"gamma", 2}, {"class_weights", {0.5, 2}}};
    const auto config = pipelines::TrainConfig::from_json(c, "");
    CHECK(config.loss == "focal");
    pipelines::train(config, dir.file("run"), {});
    std::ifstream log(dir.file("run/log.csv"));
    std::string header, line;
    std::getline(log, header);
    std::getline(log, line);
    const double loss = std::stod(line.substr(line.find(',', line.find(',') + 1) + 1));
    CHECK(std::isfinite(loss));
    CHECK(loss > 0);
    std::ifstream written(dir.file("run/config.json"));
    const json saved = json::parse(written);
    CHECK(saved["loss"] == "focal");
    CHECK(saved["loss_options"]["gamma"] == 2);
  }
}
