#include "io/compression.h"

#include <cstring>
#include <fstream>

#include <blosc.h>
#include <zlib.h>
#include <zstd.h>

#include "io/error.h"

namespace neuroseg::io {

Bytes inflate_bytes(const uint8_t* data, std::size_t size, std::size_t max_bytes, const std::string& subject) {
  Bytes out;
  std::size_t consumed = 0;
  // Loop over concatenated members: gzip allows several, and some writers make them.
  while (consumed < size) {
    z_stream zs{};
    if (inflateInit2(&zs, 15 + 32) != Z_OK) throw Error(subject, "zlib initialisation failed");
    zs.next_in = const_cast<Bytef*>(data + consumed);
    zs.avail_in = static_cast<uInt>(std::min<std::size_t>(size - consumed, 1u << 30));
    int rc = Z_OK;
    uint8_t buffer[1 << 16];
    while (rc != Z_STREAM_END) {
      zs.next_out = buffer;
      zs.avail_out = sizeof(buffer);
      rc = inflate(&zs, Z_NO_FLUSH);
      if (rc != Z_OK && rc != Z_STREAM_END) {
        inflateEnd(&zs);
        if (rc == Z_BUF_ERROR || (rc == Z_OK && zs.avail_in == 0))
          throw Error(subject, "truncated compressed data (stream ends early)");
        throw Error(subject, std::string("corrupt compressed data (") + (zs.msg ? zs.msg : "zlib error") + ")");
      }
      const std::size_t produced = sizeof(buffer) - zs.avail_out;
      if (out.size() + produced > max_bytes) {
        inflateEnd(&zs);
        throw Error(subject, "decompressed data larger than the " + std::to_string(max_bytes) + " bytes expected");
      }
      out.insert(out.end(), buffer, buffer + produced);
      if (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
        inflateEnd(&zs);
        throw Error(subject, "truncated compressed data (stream ends early)");
      }
    }
    consumed += zs.total_in;
    inflateEnd(&zs);
    // Trailing zero padding after the last member is tolerated (as gzip(1) does).
    std::size_t rest = consumed;
    while (rest < size && data[rest] == 0) ++rest;
    if (rest == size) break;
    if (!is_gzip(data + consumed, size - consumed)) break;
  }
  return out;
}

Bytes deflate_bytes(const uint8_t* data, std::size_t size, int level, bool gzip_header) {
  z_stream zs{};
  if (deflateInit2(&zs, level, Z_DEFLATED, gzip_header ? 15 + 16 : 15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw Error("", "zlib deflate initialisation failed");
  Bytes out(deflateBound(&zs, size) + 64);
  zs.next_in = const_cast<Bytef*>(data);
  zs.avail_in = static_cast<uInt>(size);
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) throw Error("", "zlib deflate failed");
  out.resize(zs.total_out);
  return out;
}

Bytes blosc_decode(const uint8_t* data, std::size_t size, std::size_t max_bytes, const std::string& subject) {
  std::size_t nbytes = 0, cbytes = 0, blocksize = 0;
  if (size < BLOSC_MIN_HEADER_LENGTH) throw Error(subject, "truncated blosc chunk (" + std::to_string(size) + " bytes)");
  blosc_cbuffer_sizes(data, &nbytes, &cbytes, &blocksize);
  if (cbytes != size) throw Error(subject, "blosc chunk header says " + std::to_string(cbytes) +
                                               " compressed bytes, file has " + std::to_string(size));
  if (nbytes > max_bytes) throw Error(subject, "blosc chunk decodes to " + std::to_string(nbytes) +
                                                   " bytes, more than the " + std::to_string(max_bytes) + " expected");
  if (blosc_cbuffer_validate(data, size, &nbytes) != 0) throw Error(subject, "corrupt blosc chunk header");
  Bytes out(nbytes);
  if (nbytes == 0) return out;
  const int rc = blosc_decompress_ctx(data, out.data(), out.size(), 1);
  if (rc < 0 || static_cast<std::size_t>(rc) != nbytes) throw Error(subject, "corrupt blosc chunk");
  return out;
}

Bytes blosc_encode(const uint8_t* data, std::size_t size, std::size_t typesize, const std::string& cname,
                   int clevel, int shuffle, const std::string& subject) {
  Bytes out(size + BLOSC_MAX_OVERHEAD);
  const int rc = blosc_compress_ctx(clevel, shuffle, typesize, size, data, out.data(), out.size(), cname.c_str(),
                                    0, 1);
  if (rc <= 0) throw Error(subject, "blosc compression with '" + cname + "' failed");
  out.resize(static_cast<std::size_t>(rc));
  return out;
}

Bytes zstd_decode(const uint8_t* data, std::size_t size, std::size_t max_bytes, const std::string& subject) {
  const unsigned long long n = ZSTD_getFrameContentSize(data, size);
  if (n == ZSTD_CONTENTSIZE_ERROR) throw Error(subject, "corrupt zstd frame");
  Bytes out;
  if (n != ZSTD_CONTENTSIZE_UNKNOWN) {
    if (n > max_bytes) throw Error(subject, "zstd frame decodes to " + std::to_string(n) + " bytes, more than the " +
                                                std::to_string(max_bytes) + " expected");
    out.resize(n);
    const std::size_t rc = ZSTD_decompress(out.data(), out.size(), data, size);
    if (ZSTD_isError(rc) || rc != n) throw Error(subject, std::string("corrupt zstd frame (") +
                                                              (ZSTD_isError(rc) ? ZSTD_getErrorName(rc) : "short") + ")");
    return out;
  }
  // Streaming frames without a content size: decode into a bounded buffer.
  ZSTD_DStream* ds = ZSTD_createDStream();
  ZSTD_initDStream(ds);
  ZSTD_inBuffer in{data, size, 0};
  uint8_t buffer[1 << 16];
  std::size_t rc = 1;
  while (in.pos < in.size) {
    ZSTD_outBuffer ob{buffer, sizeof(buffer), 0};
    rc = ZSTD_decompressStream(ds, &ob, &in);
    if (ZSTD_isError(rc)) {
      ZSTD_freeDStream(ds);
      throw Error(subject, std::string("corrupt zstd frame (") + ZSTD_getErrorName(rc) + ")");
    }
    if (out.size() + ob.pos > max_bytes) {
      ZSTD_freeDStream(ds);
      throw Error(subject, "zstd frame larger than the " + std::to_string(max_bytes) + " bytes expected");
    }
    out.insert(out.end(), buffer, buffer + ob.pos);
    if (rc == 0 && in.pos < in.size) ZSTD_initDStream(ds);  // next frame
    if (ob.pos == 0 && rc != 0 && in.pos == in.size) break;
  }
  ZSTD_freeDStream(ds);
  if (rc != 0) throw Error(subject, "truncated zstd frame");
  return out;
}

Bytes zstd_encode(const uint8_t* data, std::size_t size, int level) {
  Bytes out(ZSTD_compressBound(size));
  const std::size_t rc = ZSTD_compress(out.data(), out.size(), data, size, level);
  if (ZSTD_isError(rc)) throw Error("", std::string("zstd compression failed: ") + ZSTD_getErrorName(rc));
  out.resize(rc);
  return out;
}

Bytes read_file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw Error(path, "cannot open file (missing or unreadable)");
  const std::streamoff n = f.tellg();
  if (n < 0) throw Error(path, "cannot read file");
  Bytes out(static_cast<std::size_t>(n));
  f.seekg(0);
  if (n > 0 && !f.read(reinterpret_cast<char*>(out.data()), n)) throw Error(path, "read error");
  return out;
}

}  // namespace neuroseg::io
