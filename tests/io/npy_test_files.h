// Hand-assembled .npy file images for the reader's tests: a header dict written exactly as given (so that tests can
// write malformed ones) behind the magic, a version and a header length.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace kvflash::testing {

/// Magic, version major.0, header length (u16 for version 1, u32 for 2 and 3), `dict`, then `data`.
/// `header_len_override` >= 0 writes that length instead of the true one (a header that lies).
inline std::vector<uint8_t> npy_image(int major, const std::string& dict, const std::vector<uint8_t>& data,
                                      int64_t header_len_override = -1) {
  std::vector<uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(major), 0};
  const uint64_t len = header_len_override >= 0 ? static_cast<uint64_t>(header_len_override) : dict.size();
  const int len_bytes = major == 1 ? 2 : 4;
  for (int i = 0; i < len_bytes; ++i) out.push_back(static_cast<uint8_t>(len >> (8 * i)));
  out.insert(out.end(), dict.begin(), dict.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

/// The header dict numpy writes for a C-order array, before padding.
inline std::string npy_dict(const std::string& descr, const std::string& shape_tuple) {
  return "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape_tuple + ", }";
}

/// `count` random float32 values (fixed seed), as little-endian bytes.
inline std::vector<uint8_t> random_f32_bytes(int64_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<uint8_t> out(static_cast<size_t>(count) * 4);
  for (int64_t i = 0; i < count; ++i) {
    const float v = dist(rng);
    std::memcpy(out.data() + i * 4, &v, 4);
  }
  return out;
}

}  // namespace kvflash::testing
