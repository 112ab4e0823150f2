#include "amosprep/png_writer.hpp"

#include <zlib.h>

#include <limits>

#include "amosprep/error.hpp"
#include "amosprep/fsutil.hpp"

namespace amosprep {

RgbImage::RgbImage(int w, int h, uint8_t r, uint8_t g, uint8_t b)
    : width(w), height(h), rgb(static_cast<size_t>(w > 0 ? w : 0) * static_cast<size_t>(h > 0 ? h : 0) * 3) {
  for (size_t i = 0; i < rgb.size(); i += 3) {
    rgb[i] = r;
    rgb[i + 1] = g;
    rgb[i + 2] = b;
  }
}

namespace {

void put_u32_be(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>((v >> 24) & 0xff));
  out.push_back(static_cast<char>((v >> 16) & 0xff));
  out.push_back(static_cast<char>((v >> 8) & 0xff));
  out.push_back(static_cast<char>(v & 0xff));
}

// A chunk: length, type, data, CRC-32 over type and data.
void put_chunk(std::string& out, const char type[4], const std::string& data) {
  AMOSPREP_VERIFY(data.size() <= 0x7fffffffu, "PNG chunk too large");
  put_u32_be(out, static_cast<uint32_t>(data.size()));
  std::string body(type, 4);
  body += data;
  out += body;
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32_z(crc, reinterpret_cast<const Bytef*>(body.data()), body.size());
  put_u32_be(out, static_cast<uint32_t>(crc));
}

}  // namespace

std::string encode_png(const RgbImage& img, int zlib_level) {
  AMOSPREP_VERIFY(img.width > 0 && img.height > 0, "PNG picture must not be empty");
  AMOSPREP_VERIFY(img.rgb.size() == static_cast<size_t>(img.width) * static_cast<size_t>(img.height) * 3,
                  "PNG rgb buffer does not match width x height x 3");
  const size_t row_bytes = static_cast<size_t>(img.width) * 3;

  // Filter type 1 (Sub): each byte minus the same channel of the pixel to its left (mod 256).
  std::string filtered;
  filtered.resize((row_bytes + 1) * static_cast<size_t>(img.height));
  for (int y = 0; y < img.height; ++y) {
    const uint8_t* src = img.rgb.data() + static_cast<size_t>(y) * row_bytes;
    char* dst = filtered.data() + static_cast<size_t>(y) * (row_bytes + 1);
    dst[0] = 1;
    for (size_t i = 0; i < row_bytes; ++i) {
      const uint8_t left = i >= 3 ? src[i - 3] : 0;
      dst[1 + i] = static_cast<char>(static_cast<uint8_t>(src[i] - left));
    }
  }

  uLongf bound = compressBound(static_cast<uLong>(filtered.size()));
  std::string compressed(bound, '\0');
  const int rc = compress2(reinterpret_cast<Bytef*>(compressed.data()), &bound,
                           reinterpret_cast<const Bytef*>(filtered.data()), static_cast<uLong>(filtered.size()),
                           zlib_level);
  AMOSPREP_VERIFY(rc == Z_OK, "zlib compress2 failed for a PNG picture (" + std::to_string(rc) + ")");
  compressed.resize(bound);

  std::string ihdr;
  put_u32_be(ihdr, static_cast<uint32_t>(img.width));
  put_u32_be(ihdr, static_cast<uint32_t>(img.height));
  ihdr.push_back(8);  // bit depth
  ihdr.push_back(2);  // colour type: truecolour RGB
  ihdr.push_back(0);  // compression: deflate
  ihdr.push_back(0);  // filter method 0 (adaptive, per-row filter type byte)
  ihdr.push_back(0);  // no interlace

  std::string out("\x89PNG\r\n\x1a\n", 8);
  put_chunk(out, "IHDR", ihdr);
  put_chunk(out, "IDAT", compressed);
  put_chunk(out, "IEND", std::string());
  return out;
}

void write_png(const std::string& path, const RgbImage& img) { write_file_atomic(path, encode_png(img)); }

}  // namespace amosprep
