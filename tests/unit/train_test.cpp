// Training end to end on tiny generated volumes: it learns, resumes exactly, is
// reproducible for a seed, and its config is strict.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "io/volume_io.h"
#include "losses/dice_ce.h"
#include "models/checkpoint.h"
#include "pipelines/train.h"
#include "support/test_support.h"

using namespace neuroseg;
using nlohmann::json;

namespace {

json tiny_config(const testing::ScratchDir& dir, int epochs) {
  const json pairs = json::array({json::array({dir.file("a_img.nii.gz"), dir.file("a_seg.nii.gz")}),
                                  json::array({dir.file("b_img.nii.gz"), dir.file("b_seg.nii.gz")})});
  return {{"data", {{"train", pairs}}},
          {"model", {{"name", "unet"}, {"args", {{"channels", {4, 8}}, {"out_channels", 2}, {"deep_supervision", true}}}}},
          {"labels", {{"background", 0}, {"ball", 1}}},
          {"preprocessing", {{"orientation", "RAS"}, {"target_spacing", "median"}}},
          {"patch_size", {8, 8, 8}},
          {"batch_size", 2},
          {"epochs", epochs},
          {"iterations_per_epoch", 3},
          {"validation_every", 2},
          {"optimizer", {{"name", "sgd"}, {"lr", 0.02}}},
          {"augmentation", {{"probability", 0.5}, {"elastic", 1.0}}},
          {"workers", 2},
          {"seed", 5}};
}

at::Tensor weights_of(const std::string& checkpoint) {
  auto m = models::load_checkpoint(checkpoint).model;
  std::vector<at::Tensor> all;
  for (const auto& p : m->parameters()) all.push_back(p.reshape({-1}));
  return at::cat(all);
}

}  // namespace

TEST_SUITE("pipelines_train") {
  TEST_CASE("a few iterations train, resume exactly and reproduce for a seed") {
    testing::ScratchDir dir("train");
    testing::write_ball_case(dir, "a", 12, 16, 16, 6, 4, 1);
    testing::write_ball_case(dir, "b", 12, 16, 16, 9, 4, 2);
    const auto full = pipelines::TrainConfig::from_json(tiny_config(dir, 4), "");
    pipelines::TrainOptions o;
    const double best = pipelines::train(full, dir.file("straight"), o);
    CHECK(best >= 0);
    for (const char* f : {"checkpoint_best.pt", "checkpoint_last.pt", "train_state.pt", "log.csv", "curves.png", "config.json"})
      CHECK(std::filesystem::exists(dir.file(std::string("straight/") + f)));
    std::ifstream log(dir.file("straight/log.csv"));
    std::string line;
    int lines = 0;
    while (std::getline(log, line)) ++lines;
    CHECK(lines == 5);  // header + 4 epochs

    // Stopped after 2 epochs, then resumed to 4: the same weights as 4 straight.
    pipelines::TrainOptions stop = o;
    stop.stop_after_epoch = 2;
    pipelines::train(full, dir.file("resumed"), stop);
    CHECK_FALSE(at::equal(weights_of(dir.file("straight/checkpoint_last.pt")), weights_of(dir.file("resumed/checkpoint_last.pt"))));
    pipelines::TrainOptions resume = o;
    resume.resume = true;
    pipelines::train(full, dir.file("resumed"), resume);
    CHECK(at::equal(weights_of(dir.file("straight/checkpoint_last.pt")), weights_of(dir.file("resumed/checkpoint_last.pt"))));
    // Same seed, same result.
    pipelines::train(full, dir.file("again"), o);
    CHECK(at::equal(weights_of(dir.file("straight/checkpoint_last.pt")), weights_of(dir.file("again/checkpoint_last.pt"))));
    // The checkpoint carries the resolved preprocessing (median spacing) for segment.
    const auto meta = models::load_checkpoint(dir.file("straight/checkpoint_best.pt")).meta;
    CHECK(meta.preprocessing["target_spacing"][2].get<double>() == doctest::Approx(2.5));
    CHECK(meta.labels["ball"] == 1);
  }

  TEST_CASE("config errors name the key") {
    testing::ScratchDir dir("train_config");
    json c = tiny_config(dir, 1);
    c["epoch"] = 3;
    CHECK_THROWS_WITH(pipelines::TrainConfig::from_json(c, ""), doctest::Contains("unknown argument 'epoch'; did you mean 'epochs'?"));
    c = tiny_config(dir, 1);
    c["optimizer"]["name"] = "adam";
    CHECK_THROWS_WITH(pipelines::TrainConfig::from_json(c, ""), doctest::Contains("did you mean 'adamw'?"));
    c = tiny_config(dir, 1);
    c["model"]["args"]["chanels"] = {4, 8};
    CHECK_THROWS_WITH(pipelines::TrainConfig::from_json(c, ""), doctest::Contains("did you mean 'channels'?"));
    c = tiny_config(dir, 1);
    c["data"]["train"] = json::array({json::array({"only_one_path"})});
    CHECK_THROWS_WITH(pipelines::TrainConfig::from_json(c, ""), doctest::Contains("each entry must be [\"image path\", \"label path\"]"));
    c = tiny_config(dir, 1);
    c.erase("labels");
    CHECK_THROWS_WITH(pipelines::TrainConfig::from_json(c, ""), doctest::Contains("argument 'labels': is required"));
    pipelines::TrainOptions o;
    o.resume = true;
    CHECK_THROWS_WITH(pipelines::train(pipelines::TrainConfig::from_json(tiny_config(dir, 1), ""), dir.file("nothing"), o),
                      doctest::Contains("nothing to resume"));
  }

  TEST_CASE("folder data (nnU-Net naming) and dataset percentile statistics") {
    testing::ScratchDir dir("train_folders");
    testing::write_ball_case(dir, "a", 12, 16, 16, 6, 4, 1);
    testing::write_ball_case(dir, "b", 12, 16, 16, 9, 4, 2);
    std::filesystem::create_directories(dir.file("imagesTr"));
    std::filesystem::create_directories(dir.file("labelsTr"));
    for (const char* n : {"a", "b"}) {
      std::filesystem::rename(dir.file(std::string(n) + "_img.nii.gz"), dir.file(std::string("imagesTr/") + n + "_0000.nii.gz"));
      std::filesystem::rename(dir.file(std::string(n) + "_seg.nii.gz"), dir.file(std::string("labelsTr/") + n + ".nii.gz"));
    }
    json c = tiny_config(dir, 1);
    c["data"] = {{"train", {{"images", "imagesTr"}, {"labels", "labelsTr"}}}};
    c["preprocessing"] = {{"normalization", {{"scheme", "percentile"}}}};
    c["iterations_per_epoch"] = 1;
    const auto config = pipelines::TrainConfig::from_json(c, dir.path().string());
    REQUIRE(config.train_pairs.size() == 2);
    CHECK(config.train_pairs[1].first == dir.file("imagesTr/b_0000.nii.gz"));
    CHECK(config.train_pairs[1].second == dir.file("labelsTr/b.nii.gz"));
    pipelines::train(config, dir.file("run"), {});
    const auto norm = models::load_checkpoint(dir.file("run/checkpoint_last.pt")).meta.preprocessing["normalization"];
    CHECK(norm["scheme"] == "percentile");
    CHECK(norm["low"].get<double>() < norm["mean"].get<double>());
    CHECK(norm["mean"].get<double>() < norm["high"].get<double>());
    CHECK(norm["mean"].get<double>() == doctest::Approx(2.0).epsilon(0.1));  // the ball's intensity
    std::filesystem::remove(dir.file("labelsTr/b.nii.gz"));
    CHECK_THROWS_WITH(pipelines::TrainConfig::from_json(c, dir.path().string()), doctest::Contains("no label named 'b'"));
  }

  TEST_CASE("losses match their formulas") {
    // Perfect, confident logits: Dice loss ~ 0; uniform logits: CE = log(K).
    const at::Tensor target = at::tensor({0, 1, 1, 0}, at::kLong).view({1, 1, 2, 2});
    const at::Tensor perfect = at::stack({(target == 0).to(at::kFloat) * 20, (target == 1).to(at::kFloat) * 20}, 1);
    CHECK(losses::soft_dice_loss(perfect, target).item<double>() == doctest::Approx(0).epsilon(1e-6));
    const at::Tensor uniform = at::zeros({1, 2, 1, 2, 2});
    CHECK(losses::dice_ce_loss(uniform, target, {/*include_background=*/false, true, 1e-5, 0.0, 1.0}).item<double>() ==
          doctest::Approx(std::log(2.0)));
    // Dice of p = 0.5 everywhere vs 2 foreground voxels of 4: 2*1 / (2 + 2) = 0.5.
    CHECK(losses::soft_dice_loss(uniform, target).item<double>() == doctest::Approx(0.5).epsilon(1e-4));
  }
}
