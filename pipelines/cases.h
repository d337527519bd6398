#pragma once
// Cases of a batch run (segment, train, evaluate): what a file-or-folder argument holds and
// what each case is called.
#include <string>
#include <vector>

namespace neuroseg::pipelines {

/// Inputs of a run: the file itself, or every supported volume / DICOM series / zarr array
/// in a folder, sorted by name.
std::vector<std::string> list_cases(const std::string& input);
/// Case name: the file name without its volume extension (".nii.gz", ".mha", ...).
std::string case_name(const std::string& path);

}  // namespace neuroseg::pipelines
