#pragma once
// A small PNG encoder (8-bit RGB, zlib) for the QA pictures.
#include <cstdint>
#include <string>
#include <vector>

namespace amosprep {

/// An 8-bit RGB picture: `height` rows of `width` pixels, top row first, 3 bytes (R, G, B) per pixel.
struct RgbImage {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;

  RgbImage() = default;
  /// A width x height picture filled with one colour.
  RgbImage(int w, int h, uint8_t r = 0, uint8_t g = 0, uint8_t b = 0);
  uint8_t* pixel(int x, int y) { return rgb.data() + (static_cast<size_t>(y) * width + x) * 3; }
  const uint8_t* pixel(int x, int y) const { return rgb.data() + (static_cast<size_t>(y) * width + x) * 3; }
};

/// PNG bytes of `img`: signature, IHDR (8-bit truecolour, no interlace), one IDAT (zlib stream at
/// `zlib_level`, every scanline with filter type 1 "Sub"), IEND; CRCs computed with zlib's crc32.
/// Throws InternalError for an empty picture, a size beyond 2^31-1 or an rgb buffer of the wrong length.
std::string encode_png(const RgbImage& img, int zlib_level = 6);

/// Writes encode_png(img) atomically to `path`; throws IoError naming the file.
void write_png(const std::string& path, const RgbImage& img);

}  // namespace amosprep
