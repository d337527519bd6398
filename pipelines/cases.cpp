#include "pipelines/cases.h"

#include <algorithm>
#include <filesystem>

#include "io/error.h"

namespace fs = std::filesystem;

namespace neuroseg::pipelines {
namespace {

const char* kExtensions[] = {".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".tif", ".tiff", ".dcm", ".zarr"};

/// The image of a FISBe-style zarr sample (<name>.zarr/volumes/raw), or "" if `p` is none.
std::string sample_image(const fs::path& p) {
  if (fs::exists(p / ".zarray")) return "";
  const fs::path raw = p / "volumes" / "raw";
  return fs::exists(raw / ".zarray") ? raw.string() : "";
}

}  // namespace

bool has_volume_extension(const std::string& name) {
  for (const char* e : kExtensions) {
    const std::string ext(e);
    if (name.size() > ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0) return true;
  }
  return false;
}

std::vector<std::string> list_cases(const std::string& input) {
  std::error_code ec;
  if (!fs::exists(input, ec)) throw io::Error(input, "no such file or folder");
  if (const std::string raw = sample_image(input); !raw.empty()) return {raw};
  if (!fs::is_directory(input) || fs::exists(fs::path(input) / ".zarray")) return {input};
  std::vector<std::string> cases;
  for (const auto& entry : fs::directory_iterator(input)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (entry.is_directory())
      if (const std::string raw = sample_image(entry.path()); !raw.empty()) {
        cases.push_back(raw);
        continue;
      }
    if (has_volume_extension(name) || (entry.is_directory() && fs::exists(entry.path() / ".zarray")))
      cases.push_back(entry.path().string());
  }
  if (cases.empty()) cases.push_back(input);  // maybe a DICOM series folder: read_volume decides
  std::sort(cases.begin(), cases.end());
  return cases;
}

std::string case_name(const std::string& path) {
  // An array inside a zarr sample (FISBe: <name>.zarr/volumes/raw) is named after the sample.
  for (fs::path p = fs::path(path).parent_path(); !p.empty() && p != p.root_path(); p = p.parent_path())
    if (p.extension() == ".zarr") return p.stem().string();
  std::string name = fs::path(path).filename().string();
  if (name.empty()) name = fs::path(path).parent_path().filename().string();
  for (const char* e : kExtensions) {
    const std::string ext(e);
    if (name.size() > ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0)
      return name.substr(0, name.size() - ext.size());
  }
  return name;
}

}  // namespace neuroseg::pipelines
