#include "io/atomic_output.h"

#include <filesystem>
#include <fstream>
#include <random>
#include <system_error>
#include <vector>

#include <unistd.h>

#include "io/error.h"

namespace fs = std::filesystem;

namespace neuroseg::io {

AtomicOutput::AtomicOutput(const std::string& final_path) : final_path_(final_path) {
  fs::path target(final_path);
  if (target.filename().empty()) throw Error(final_path, "output path has no file name");
  fs::path parent = target.parent_path();
  if (parent.empty()) parent = ".";
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) throw Error(final_path, "cannot create output folder (" + ec.message() + ")");
  std::random_device rd;
  for (int attempt = 0; attempt < 16; ++attempt) {
    const fs::path dir = parent / (".neuroseg-tmp-" + std::to_string(::getpid()) + "-" + std::to_string(rd() % 1000000));
    if (fs::create_directory(dir, ec)) {
      temp_dir_ = dir.string();
      break;
    }
  }
  if (temp_dir_.empty()) throw Error(final_path, "cannot create a temporary folder beside the output");
  temp_path_ = (fs::path(temp_dir_) / target.filename()).string();
}

AtomicOutput::~AtomicOutput() {
  std::error_code ec;
  if (!temp_dir_.empty()) fs::remove_all(temp_dir_, ec);
}

void AtomicOutput::commit() {
  if (committed_) return;
  const fs::path target(final_path_);
  fs::path parent = target.parent_path();
  if (parent.empty()) parent = ".";
  std::error_code ec;
  if (!fs::exists(temp_path_)) throw Error(final_path_, "nothing was written");
  auto move_into_place = [&](const fs::path& from, const fs::path& to) {
    if (fs::is_directory(to) && !fs::is_symlink(to)) {
      // rename() cannot replace a non-empty folder: move the old one aside first.
      const fs::path trash = fs::path(temp_dir_) / ".old";
      fs::rename(to, trash, ec);
      if (ec) throw Error(to.string(), "cannot replace existing folder (" + ec.message() + ")");
    }
    fs::rename(from, to, ec);
    if (ec) throw Error(to.string(), "cannot move output into place (" + ec.message() + ")");
  };
  std::vector<fs::path> companions;
  for (const auto& entry : fs::directory_iterator(temp_dir_))
    if (entry.path() != fs::path(temp_path_)) companions.push_back(entry.path());
  for (const auto& p : companions) move_into_place(p, parent / p.filename());
  move_into_place(temp_path_, target);
  committed_ = true;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  f.close();
  if (!f) throw Error(path, "write failed (disk full or not writable)");
}

void write_text_atomic(const std::string& path, const std::string& text) {
  AtomicOutput out(path);
  write_text(out.path(), text);
  out.commit();
}

}  // namespace neuroseg::io
