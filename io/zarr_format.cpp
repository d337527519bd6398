#include "io/zarr_format.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#include "io/error.h"

namespace neuroseg::io {
namespace {

constexpr int64_t kMaxVoxels = int64_t(1) << 36;
constexpr int64_t kMaxChunkVoxels = int64_t(1) << 31;

void byteswap_items(uint8_t* data, int64_t count, int itemsize) {
  if (itemsize == 1) return;
  for (int64_t i = 0; i < count; ++i) {
    uint8_t* p = data + i * itemsize;
    for (int k = 0; k < itemsize / 2; ++k) std::swap(p[k], p[itemsize - 1 - k]);
  }
}

int64_t checked_product(const std::vector<int64_t>& v, int64_t limit, const std::string& subject, const char* what) {
  int64_t n = 1;
  for (int64_t x : v) {
    if (x != 0 && n > limit / x) throw Error(subject, std::string("absurd ") + what + " (too many voxels)");
    n *= x;
  }
  return n;
}

}  // namespace

std::string ZarrArrayMeta::dtype_string() const {
  const char order = itemsize == 1 ? '|' : (big_endian ? '>' : '<');
  return std::string(1, order) + kind + std::to_string(itemsize);
}

int64_t ZarrArrayMeta::voxel_count() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

int64_t ZarrArrayMeta::chunk_voxels() const {
  int64_t n = 1;
  for (int64_t c : chunks) n *= c;
  return n;
}

std::vector<int64_t> ZarrArrayMeta::chunk_grid() const {
  std::vector<int64_t> g(shape.size());
  for (std::size_t i = 0; i < shape.size(); ++i) g[i] = (shape[i] + chunks[i] - 1) / chunks[i];
  return g;
}

std::string ZarrArrayMeta::chunk_key(const std::vector<int64_t>& idx) const {
  std::string key;
  for (std::size_t i = 0; i < idx.size(); ++i) {
    if (i) key += dimension_separator;
    key += std::to_string(idx[i]);
  }
  return key.empty() ? "0" : key;
}

ZarrArrayMeta parse_zarray(const std::string& text, const std::string& subject) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw Error(subject, std::string("corrupt .zarray JSON (") + e.what() + ")");
  }
  if (!j.is_object()) throw Error(subject, ".zarray is not a JSON object");
  ZarrArrayMeta m;
  // Integers only where the format has integers: nlohmann's get<int> of a float like 1e66 is
  // undefined behaviour (found by the zarr fuzzer), so a key must hold a JSON integer in range.
  auto integer = [&](const nlohmann::json& v, const std::string& what, int64_t fallback, bool present) -> int64_t {
    if (!present) return fallback;
    if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)))
      throw Error(subject, what + " in .zarray must be an integer");
    return v.get<int64_t>();
  };
  auto integers = [&](const nlohmann::json& v, const std::string& what) {
    if (!v.is_array()) throw Error(subject, what + " in .zarray must be a list of integers");
    std::vector<int64_t> out;
    for (const auto& e : v) out.push_back(integer(e, what, 0, true));
    return out;
  };
  auto key_integer = [&](const nlohmann::json& obj, const char* key, int64_t fallback) {
    return integer(obj.contains(key) ? obj.at(key) : nlohmann::json(), key, fallback, obj.contains(key));
  };
  try {
    if (key_integer(j, "zarr_format", 0) != 2)
      throw Error(subject, "unsupported zarr_format (only zarr v2 is supported)");
    for (const char* key : {"shape", "chunks", "dtype"})
      if (!j.contains(key)) throw Error(subject, std::string(".zarray lacks \"") + key + "\"");
    m.shape = integers(j.at("shape"), "shape");
    m.chunks = integers(j.at("chunks"), "chunks");
    if (m.shape.size() != m.chunks.size())
      throw Error(subject, "shape and chunks have different lengths in .zarray");
    if (m.shape.size() > 8) throw Error(subject, "more than 8 dimensions in .zarray");
    for (std::size_t i = 0; i < m.shape.size(); ++i) {
      if (m.shape[i] < 0) throw Error(subject, "negative shape in .zarray");
      if (m.chunks[i] < 1) throw Error(subject, "chunk size < 1 in .zarray");
    }
    checked_product(m.shape, kMaxVoxels, subject, "shape");
    checked_product(m.chunks, kMaxChunkVoxels, subject, "chunk shape");

    if (!j.at("dtype").is_string()) throw Error(subject, "structured dtypes are not supported");
    const std::string dt = j.at("dtype").get<std::string>();
    if (dt.size() < 3 || (dt[0] != '<' && dt[0] != '>' && dt[0] != '|'))
      throw Error(subject, "unsupported dtype '" + dt + "'");
    m.big_endian = dt[0] == '>';
    m.kind = dt[1];
    const std::string size_str = dt.substr(2);
    if (size_str != "1" && size_str != "2" && size_str != "4" && size_str != "8")
      throw Error(subject, "unsupported dtype '" + dt + "'");
    m.itemsize = std::stoi(size_str);
    const bool ok = (m.kind == 'u' && (m.itemsize == 1 || m.itemsize == 2)) ||
                    (m.kind == 'i' && (m.itemsize == 1 || m.itemsize == 2 || m.itemsize == 4)) ||
                    (m.kind == 'f' && (m.itemsize == 4 || m.itemsize == 8)) || (m.kind == 'b' && m.itemsize == 1);
    if (!ok) throw Error(subject, "unsupported dtype '" + dt + "' (supported: |b1 u1 i1 u2 i2 i4 f4 f8)");

    const std::string order = j.value("order", std::string("C"));
    if (order != "C") throw Error(subject, "order '" + order + "' is not supported (only C order)");
    if (j.contains("filters") && !j.at("filters").is_null() && !j.at("filters").empty())
      throw Error(subject, "zarr filters are not supported");
    m.dimension_separator = j.value("dimension_separator", std::string("."));
    if (m.dimension_separator != "." && m.dimension_separator != "/")
      throw Error(subject, "dimension_separator must be '.' or '/'");

    const auto& fv = j.contains("fill_value") ? j.at("fill_value") : nlohmann::json();
    if (fv.is_number()) m.fill_value = fv.get<double>();
    else if (fv.is_boolean()) m.fill_value = fv.get<bool>() ? 1 : 0;
    else if (fv.is_string()) {
      const std::string s = fv.get<std::string>();
      if (s == "NaN") m.fill_value = std::numeric_limits<double>::quiet_NaN();
      else if (s == "Infinity") m.fill_value = std::numeric_limits<double>::infinity();
      else if (s == "-Infinity") m.fill_value = -std::numeric_limits<double>::infinity();
      else throw Error(subject, "unsupported fill_value '" + s + "'");
    }

    const auto& comp = j.contains("compressor") ? j.at("compressor") : nlohmann::json();
    if (!comp.is_null()) {
      if (!comp.is_object() || !comp.contains("id") || !comp.at("id").is_string())
        throw Error(subject, "compressor must be null or an object with an \"id\"");
      m.compressor.id = comp.at("id").get<std::string>();
      if (m.compressor.id == "zlib" || m.compressor.id == "gzip" || m.compressor.id == "zstd") {
        m.compressor.level = static_cast<int>(std::clamp<int64_t>(key_integer(comp, "level", 1), -1000, 1000));
      } else if (m.compressor.id == "blosc") {
        m.compressor.cname = comp.value("cname", std::string("lz4"));
        m.compressor.level = static_cast<int>(std::clamp<int64_t>(key_integer(comp, "clevel", 5), -1000, 1000));
        m.compressor.shuffle = static_cast<int>(std::clamp<int64_t>(key_integer(comp, "shuffle", 1), -1000, 1000));
      } else {
        throw Error(subject, "unsupported compressor '" + m.compressor.id + "' (supported: zlib, gzip, blosc, zstd)");
      }
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(subject, std::string("bad value in .zarray (") + e.what() + ")");
  } catch (const std::invalid_argument&) {
    throw Error(subject, "bad dtype in .zarray");
  }
  return m;
}

std::string serialize_zarray(const ZarrArrayMeta& m) {
  nlohmann::json j;
  j["zarr_format"] = 2;
  j["shape"] = m.shape;
  j["chunks"] = m.chunks;
  j["dtype"] = m.dtype_string();
  j["order"] = "C";
  j["filters"] = nullptr;
  if (std::isnan(m.fill_value)) j["fill_value"] = "NaN";
  else if (m.kind == 'f') j["fill_value"] = m.fill_value;
  else j["fill_value"] = static_cast<int64_t>(m.fill_value);
  if (m.dimension_separator != ".") j["dimension_separator"] = m.dimension_separator;
  if (m.compressor.id.empty()) {
    j["compressor"] = nullptr;
  } else if (m.compressor.id == "blosc") {
    j["compressor"] = {{"id", "blosc"}, {"cname", m.compressor.cname}, {"clevel", m.compressor.level},
                       {"shuffle", m.compressor.shuffle}, {"blocksize", 0}};
  } else {
    j["compressor"] = {{"id", m.compressor.id}, {"level", m.compressor.level}};
  }
  return j.dump(4);
}

Bytes decode_chunk(const ZarrArrayMeta& m, const uint8_t* data, std::size_t size, const std::string& subject) {
  const std::size_t expected = static_cast<std::size_t>(m.chunk_voxels()) * m.itemsize;
  Bytes raw;
  const std::string& id = m.compressor.id;
  if (id.empty()) raw.assign(data, data + size);
  else if (id == "zlib" || id == "gzip") raw = inflate_bytes(data, size, expected, subject);
  else if (id == "blosc") raw = blosc_decode(data, size, expected, subject);
  else if (id == "zstd") raw = zstd_decode(data, size, expected, subject);
  else throw Error(subject, "unsupported compressor '" + id + "'");
  if (raw.size() != expected)
    throw Error(subject, "chunk holds " + std::to_string(raw.size()) + " bytes, expected " + std::to_string(expected) +
                             " (truncated or corrupt)");
  if (m.big_endian) byteswap_items(raw.data(), m.chunk_voxels(), m.itemsize);
  return raw;
}

Bytes encode_chunk(const ZarrArrayMeta& m, const Bytes& raw_in) {
  const Bytes* raw = &raw_in;
  Bytes swapped;
  if (m.big_endian) {
    swapped = raw_in;
    byteswap_items(swapped.data(), static_cast<int64_t>(swapped.size()) / m.itemsize, m.itemsize);
    raw = &swapped;
  }
  const std::string& id = m.compressor.id;
  if (id.empty()) return *raw;
  if (id == "zlib") return deflate_bytes(raw->data(), raw->size(), m.compressor.level, false);
  if (id == "gzip") return deflate_bytes(raw->data(), raw->size(), m.compressor.level, true);
  if (id == "zstd") return zstd_encode(raw->data(), raw->size(), m.compressor.level);
  if (id == "blosc")
    return blosc_encode(raw->data(), raw->size(), m.itemsize, m.compressor.cname, m.compressor.level,
                        m.compressor.shuffle, "");
  throw Error("", "unsupported compressor '" + id + "'");
}

void copy_chunk(const ZarrArrayMeta& m, const std::vector<int64_t>& ci, uint8_t* chunk, uint8_t* dense, bool to_chunk) {
  const std::size_t nd = m.shape.size();
  const int64_t isz = m.itemsize;
  if (nd == 0) {
    if (to_chunk) std::memcpy(chunk, dense, isz);
    else std::memcpy(dense, chunk, isz);
    return;
  }
  if (to_chunk) fill_with_fill_value(m, chunk, m.chunk_voxels());
  const std::vector<int64_t> grid = m.chunk_grid();
  for (std::size_t d = 0; d < nd; ++d)
    if (ci.size() != nd || ci[d] < 0 || ci[d] >= grid[d]) return;  // outside the array: nothing to copy
  // Extent of this chunk inside the array, and C-order strides of both buffers.
  std::vector<int64_t> begin(nd), extent(nd), dstride(nd), cstride(nd);
  for (std::size_t d = 0; d < nd; ++d) {
    begin[d] = ci[d] * m.chunks[d];
    extent[d] = std::max<int64_t>(0, std::min(m.chunks[d], m.shape[d] - begin[d]));
    if (extent[d] == 0) return;
  }
  dstride[nd - 1] = cstride[nd - 1] = 1;
  for (std::size_t d = nd - 1; d-- > 0;) {
    dstride[d] = dstride[d + 1] * m.shape[d + 1];
    cstride[d] = cstride[d + 1] * m.chunks[d + 1];
  }
  // Walk all rows (every index but the last), copying one contiguous run per row.
  std::vector<int64_t> pos(nd, 0);
  const int64_t run = extent[nd - 1] * isz;
  while (true) {
    int64_t doff = 0, coff = 0;
    for (std::size_t d = 0; d < nd; ++d) {
      doff += (begin[d] + pos[d]) * dstride[d];
      coff += pos[d] * cstride[d];
    }
    if (to_chunk) std::memcpy(chunk + coff * isz, dense + doff * isz, run);
    else std::memcpy(dense + doff * isz, chunk + coff * isz, run);
    std::size_t d = nd - 1;
    while (d-- > 0) {
      if (++pos[d] < extent[d]) break;
      pos[d] = 0;
    }
    if (d == static_cast<std::size_t>(-1)) break;
  }
}

void fill_with_fill_value(const ZarrArrayMeta& m, uint8_t* data, int64_t count) {
  uint8_t item[8] = {0};
  const double v = m.fill_value;
  switch (m.kind) {
    case 'f':
      if (m.itemsize == 4) {
        const float f = static_cast<float>(v);
        std::memcpy(item, &f, 4);
      } else {
        std::memcpy(item, &v, 8);
      }
      break;
    case 'u':
    case 'b':
    case 'i': {
      const int64_t iv = std::isfinite(v) ? static_cast<int64_t>(v) : 0;
      std::memcpy(item, &iv, m.itemsize);  // little-endian host
      break;
    }
    default: break;
  }
  bool zero = true;
  for (int k = 0; k < m.itemsize; ++k) zero = zero && item[k] == 0;
  if (zero) {
    std::memset(data, 0, static_cast<std::size_t>(count) * m.itemsize);
    return;
  }
  for (int64_t i = 0; i < count; ++i) std::memcpy(data + i * m.itemsize, item, m.itemsize);
}

}  // namespace neuroseg::io
