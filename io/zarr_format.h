#pragma once
// zarr v2 arrays (the FISBe format): .zarray metadata, chunk keys, chunk codecs and
// the copy between chunks and a dense C-order array. Torch-free for the fuzzer.
// Spec: https://zarr-specs.readthedocs.io/en/latest/v2/v2.0.html
#include <cstdint>
#include <string>
#include <vector>

#include "io/compression.h"

namespace neuroseg::io {

struct ZarrCompressor {
  std::string id;        ///< "" (none), "zlib", "gzip", "blosc", "zstd"
  int level = 5;         ///< zlib/gzip/zstd level, blosc clevel
  std::string cname = "lz4";  ///< blosc inner codec
  int shuffle = 1;       ///< blosc: 0 none, 1 byte, 2 bit
};

struct ZarrArrayMeta {
  std::vector<int64_t> shape;
  std::vector<int64_t> chunks;
  char kind = 'u';        ///< numpy kind: 'u', 'i', 'f', 'b'
  int itemsize = 1;
  bool big_endian = false;
  ZarrCompressor compressor;
  double fill_value = 0;  ///< NaN allowed for floats
  std::string dimension_separator = ".";

  std::string dtype_string() const;     ///< "<u2", "|u1", ...
  int64_t voxel_count() const;
  int64_t chunk_voxels() const;
  /// Number of chunks along each axis.
  std::vector<int64_t> chunk_grid() const;
  /// Storage key of a chunk, e.g. "0.3.1" or "0/3/1".
  std::string chunk_key(const std::vector<int64_t>& chunk_index) const;
};

/// Parses and validates .zarray text (zarr_format 2, C order, no filters, known dtype
/// and compressor, sane shapes). Throws io::Error naming `subject`.
ZarrArrayMeta parse_zarray(const std::string& json_text, const std::string& subject);
std::string serialize_zarray(const ZarrArrayMeta& meta);

/// Decodes one stored chunk to native-endian bytes of exactly chunk_voxels()*itemsize.
Bytes decode_chunk(const ZarrArrayMeta& meta, const uint8_t* data, std::size_t size, const std::string& subject);
/// Encodes native-endian chunk bytes with the array's compressor (and byte order).
Bytes encode_chunk(const ZarrArrayMeta& meta, const Bytes& raw);

/// Copies a decoded chunk into the dense C-order array `dense` (voxel_count()*itemsize
/// bytes), clipping at the array edge; `to_chunk` true copies the other way (for writing;
/// the padding of edge chunks is filled with fill_value).
void copy_chunk(const ZarrArrayMeta& meta, const std::vector<int64_t>& chunk_index, uint8_t* chunk, uint8_t* dense,
                bool to_chunk);

/// Fills `count` items of `itemsize` bytes with the array's fill value.
void fill_with_fill_value(const ZarrArrayMeta& meta, uint8_t* data, int64_t count);

}  // namespace neuroseg::io
