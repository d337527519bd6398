#pragma once
// Write-then-rename: every output is written into a hidden temporary folder beside its
// final place and moved there only when complete, so a failure never leaves a partial
// file. A folder (not a file name) because some formats write companions (.mhd + .raw)
// that reference each other by name, and zarr writes a directory.
#include <string>

namespace neuroseg::io {

class AtomicOutput {
 public:
  /// Creates the parent folders of `final_path` and a temporary folder beside it.
  explicit AtomicOutput(const std::string& final_path);
  ~AtomicOutput();
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;

  /// Where to write: <tmp folder>/<final file name>. Companions go beside it.
  const std::string& path() const { return temp_path_; }
  /// Moves everything written into the final folder (companions first, the named
  /// output last, replacing what was there) and removes the temporary folder.
  void commit();

 private:
  std::string final_path_;
  std::string temp_dir_;
  std::string temp_path_;
  bool committed_ = false;
};

/// Writes `text` to `path` (e.g. inside an AtomicOutput's folder); io::Error naming `path`.
void write_text(const std::string& path, const std::string& text);
/// Writes `text` to `path` through an AtomicOutput; throws io::Error naming `path`.
void write_text_atomic(const std::string& path, const std::string& text);

}  // namespace neuroseg::io
