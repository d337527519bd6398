#pragma once
// Cases of a batch run (segment, train, evaluate): what a file-or-folder argument holds and
// what each case is called.
#include <string>
#include <vector>

namespace neuroseg::pipelines {

/// Inputs of a run: the file itself, or every supported volume / DICOM series / zarr array
/// in a folder, sorted by name. A zarr sample in FISBe's layout (<name>.zarr/volumes/raw)
/// stands for its raw array.
std::vector<std::string> list_cases(const std::string& input);
/// Whether a file name ends in a volume extension (.nii.gz, .mha, .zarr, ...).
bool has_volume_extension(const std::string& name);
/// Case name: the file name without its volume extension (".nii.gz", ".mha", ...); for an
/// array inside a zarr sample, the sample's name (<name>.zarr/volumes/raw -> <name>).
std::string case_name(const std::string& path);

}  // namespace neuroseg::pipelines
