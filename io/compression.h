#pragma once
// Byte codecs shared by the NIfTI (.nii.gz) and zarr readers/writers. Torch-free, so
// the libFuzzer targets link it alone. Every decoder bounds its output (`max_bytes`)
// and reports corrupt input as io::Error naming `subject`.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace neuroseg::io {

using Bytes = std::vector<uint8_t>;

/// gzip or zlib stream (auto-detected, concatenated gzip members allowed).
Bytes inflate_bytes(const uint8_t* data, std::size_t size, std::size_t max_bytes, const std::string& subject);
/// `gzip_header` true: gzip framing (numcodecs "gzip", .nii.gz); false: zlib ("zlib").
Bytes deflate_bytes(const uint8_t* data, std::size_t size, int level, bool gzip_header);

Bytes blosc_decode(const uint8_t* data, std::size_t size, std::size_t max_bytes, const std::string& subject);
/// shuffle: 0 none, 1 byte, 2 bit (numcodecs.Blosc's values); cname e.g. "lz4", "zstd".
Bytes blosc_encode(const uint8_t* data, std::size_t size, std::size_t typesize, const std::string& cname,
                   int clevel, int shuffle, const std::string& subject);

Bytes zstd_decode(const uint8_t* data, std::size_t size, std::size_t max_bytes, const std::string& subject);
Bytes zstd_encode(const uint8_t* data, std::size_t size, int level);

/// True when the bytes start with the gzip magic 1f 8b.
inline bool is_gzip(const uint8_t* data, std::size_t size) {
  return size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
}

/// Reads a whole file; throws io::Error("path", "cannot open ...") on failure.
Bytes read_file_bytes(const std::string& path);

}  // namespace neuroseg::io
