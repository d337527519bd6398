// libFuzzer target: .zarray metadata + one chunk through the decoders and the chunk copy.
// Input layout: [2-byte little-endian JSON length][JSON][chunk bytes].
#include <cstdint>
#include <cstring>
#include <string>

#include "io/error.h"
#include "io/zarr_format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace neuroseg::io;
  if (size < 2) return 0;
  const size_t json_len = std::min<size_t>(size - 2, data[0] | (data[1] << 8));
  const std::string json(reinterpret_cast<const char*>(data + 2), json_len);
  const uint8_t* chunk = data + 2 + json_len;
  const size_t chunk_size = size - 2 - json_len;
  try {
    ZarrArrayMeta m = parse_zarray(json, "fuzz/.zarray");
    // Keep the dense buffer small: the fuzzer explores parsing, not allocation limits.
    if (m.voxel_count() * m.itemsize > (1 << 22) || m.chunk_voxels() * m.itemsize > (1 << 22)) return 0;
    Bytes decoded = decode_chunk(m, chunk, chunk_size, "fuzz/0");
    Bytes dense(static_cast<size_t>(m.voxel_count()) * m.itemsize);
    std::vector<int64_t> index(m.shape.size(), 0);
    copy_chunk(m, index, decoded.data(), dense.data(), false);
    const std::vector<int64_t> grid = m.chunk_grid();
    for (size_t d = 0; d < grid.size(); ++d) index[d] = grid[d] - 1;  // the last (edge) chunk
    copy_chunk(m, index, decoded.data(), dense.data(), false);
    copy_chunk(m, index, decoded.data(), dense.data(), true);
    Bytes again = encode_chunk(m, decoded);
    Bytes back = decode_chunk(m, again.data(), again.size(), "fuzz/0");
    if (back != decoded) __builtin_trap();  // codecs must round-trip
    (void)serialize_zarray(m);
  } catch (const Error&) {
  }
  return 0;
}
