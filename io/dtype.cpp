#include "io/dtype.h"

#include <limits>

#include "io/error.h"

namespace neuroseg::io {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::UInt8: return "uint8";
    case DType::Int8: return "int8";
    case DType::Int16: return "int16";
    case DType::UInt16: return "uint16";
    case DType::Int32: return "int32";
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
  }
  return "?";
}

DType dtype_from_name(const std::string& name, const std::string& subject) {
  for (DType d : {DType::UInt8, DType::Int8, DType::Int16, DType::UInt16, DType::Int32,
                  DType::Float32, DType::Float64})
    if (name == dtype_name(d)) return d;
  throw Error(subject, "unknown dtype '" + name +
                           "' (expected uint8, int8, int16, uint16, int32, float32 or float64)");
}

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::UInt8:
    case DType::Int8: return 1;
    case DType::Int16:
    case DType::UInt16: return 2;
    case DType::Int32:
    case DType::Float32: return 4;
    case DType::Float64: return 8;
  }
  return 0;
}

c10::ScalarType memory_scalar_type(DType dtype) {
  switch (dtype) {
    case DType::UInt8: return c10::kByte;
    case DType::Int8: return c10::kChar;
    case DType::Int16: return c10::kShort;
    case DType::UInt16:
    case DType::Int32: return c10::kInt;
    case DType::Float32: return c10::kFloat;
    case DType::Float64: return c10::kDouble;
  }
  return c10::kFloat;
}

bool dtype_is_integer(DType dtype) { return dtype != DType::Float32 && dtype != DType::Float64; }

DType dtype_from_scalar_type(c10::ScalarType type, const std::string& subject) {
  switch (type) {
    case c10::kByte: return DType::UInt8;
    case c10::kChar: return DType::Int8;
    case c10::kShort: return DType::Int16;
    case c10::kInt: return DType::Int32;
    case c10::kFloat: return DType::Float32;
    case c10::kDouble: return DType::Float64;
    case c10::kBool: return DType::UInt8;
    default: throw Error(subject, std::string("no on-disk dtype for tensor type ") + c10::toString(type));
  }
}

double dtype_min(DType dtype) {
  switch (dtype) {
    case DType::UInt8:
    case DType::UInt16: return 0;
    case DType::Int8: return std::numeric_limits<int8_t>::min();
    case DType::Int16: return std::numeric_limits<int16_t>::min();
    case DType::Int32: return std::numeric_limits<int32_t>::min();
    case DType::Float32: return -std::numeric_limits<float>::max();
    case DType::Float64: return -std::numeric_limits<double>::max();
  }
  return 0;
}

double dtype_max(DType dtype) {
  switch (dtype) {
    case DType::UInt8: return std::numeric_limits<uint8_t>::max();
    case DType::UInt16: return std::numeric_limits<uint16_t>::max();
    case DType::Int8: return std::numeric_limits<int8_t>::max();
    case DType::Int16: return std::numeric_limits<int16_t>::max();
    case DType::Int32: return std::numeric_limits<int32_t>::max();
    case DType::Float32: return std::numeric_limits<float>::max();
    case DType::Float64: return std::numeric_limits<double>::max();
  }
  return 0;
}

}  // namespace neuroseg::io
