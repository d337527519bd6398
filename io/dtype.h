#pragma once
// Voxel types neuroseg stores on disk, and how each is held in memory.
#include <cstddef>
#include <cstdint>
#include <string>

#include <c10/core/ScalarType.h>

namespace neuroseg::io {

/// \brief On-disk voxel type. uint16 is held in memory as int32 because LibTorch's
/// uint16 has almost no kernels; the file type is kept in SourceInfo and restored on write.
enum class DType { UInt8, Int8, Int16, UInt16, Int32, Float32, Float64 };

const char* dtype_name(DType dtype);         ///< "uint8", "int16", ...
DType dtype_from_name(const std::string& name, const std::string& subject);  ///< throws io::Error
std::size_t dtype_size(DType dtype);          ///< bytes per voxel on disk
c10::ScalarType memory_scalar_type(DType dtype);  ///< tensor dtype that holds it exactly
bool dtype_is_integer(DType dtype);
/// The on-disk type matching a tensor dtype (int32 -> Int32, ...); throws for others.
DType dtype_from_scalar_type(c10::ScalarType type, const std::string& subject);
/// Representable range of an integer dtype (for checks before a narrowing write).
double dtype_min(DType dtype);
double dtype_max(DType dtype);

}  // namespace neuroseg::io
