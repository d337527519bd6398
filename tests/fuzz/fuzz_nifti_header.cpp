// libFuzzer target: the NIfTI-1/2 header path (parse, affine selection, serialise, reparse).
#include <cmath>
#include <cstdint>

#include "io/error.h"
#include "io/nifti_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace neuroseg::io;
  try {
    const NiftiHeader h = parse_nifti_header(data, size, "fuzz.nii");
    const auto affine = nifti_best_affine(h);
    (void)h.payload_bytes();
    NiftiHeader w = h;
    bool finite = true;
    for (double v : affine) finite = finite && std::isfinite(v);
    if (finite) nifti_set_affine(w, affine);
    const auto bytes = serialize_nifti_header(w);
    const NiftiHeader r = parse_nifti_header(bytes.data(), bytes.size(), "fuzz.nii");
    if (r.dim != w.dim || r.datatype != w.datatype) __builtin_trap();  // must re-read what we wrote
  } catch (const Error&) {
  }
  return 0;
}
