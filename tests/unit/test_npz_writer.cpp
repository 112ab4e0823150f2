#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include "amosprep/error.hpp"
#include "amosprep/fsutil.hpp"
#include "amosprep/npz_writer.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using namespace amosprep;

namespace {

using test::run_format_checker;
using test::TempDir;

int entries_in(const fs::path& dir) {
  int n = 0;
  for (auto& e : fs::directory_iterator(dir)) { (void)e; ++n; }
  return n;
}

// Same values as expected_f32() in check_formats.py: f32(i * 0.37 - 11) with -0, NaN, inf, -1 in front.
std::vector<float> sample_f32(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>(static_cast<double>(i) * 0.37 - 11.0);
  if (n >= 4) {
    v[0] = -0.0f;
    v[1] = std::numeric_limits<float>::quiet_NaN();
    v[2] = std::numeric_limits<float>::infinity();
    v[3] = -1.0f;
  }
  return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// The members of expected_multi() in check_formats.py.
void add_multi(NpzWriter& w, const std::vector<float>& data) {
  const double spacing[] = {5.0, 0.8369140625, 0.837890625};
  int64_t locations[12];
  for (int i = 0; i < 12; ++i) locations[i] = i - 5;
  const uint8_t mask[] = {0, 1, 255};
  const uint8_t flags[] = {1, 0, 1};
  const int16_t hu[] = {-1024, 3071, 0};
  const float scalar = 0.5f;
  w.add("data", py::DType::f4, data.data(), {2, 3, 4, 5});
  w.add("spacing", py::DType::f8, spacing, {3});
  w.add("locations", py::DType::i8, locations, {4, 3});
  w.add("mask", py::DType::u1, mask, {1, 3});
  w.add("flags", py::DType::b1, flags, {3});
  w.add("hu", py::DType::i2, hu, {3});
  w.add("scalar", py::DType::f4, &scalar, {});
  w.add("empty", py::DType::f4, nullptr, {0, 4});
}

const NpzCompression kModes[] = {NpzCompression::none, NpzCompression::fast, NpzCompression::nnunet};

}  // namespace

TEST(NpzWriter, CompressionNames) {
  EXPECT_EQ(npz_compression_from_name("none"), NpzCompression::none);
  EXPECT_EQ(npz_compression_from_name("fast"), NpzCompression::fast);
  EXPECT_EQ(npz_compression_from_name("nnunet"), NpzCompression::nnunet);
  EXPECT_THROW(npz_compression_from_name("zstd"), UsageError);
  EXPECT_THROW(npz_compression_from_name(""), UsageError);
  for (auto c : kModes) EXPECT_EQ(npz_compression_from_name(npz_compression_name(c)), c);
}

TEST(NpzWriter, NpyHeaderIsNumpys) {
  // Golden bytes from numpy 1.24 format._write_array_header(..., (1, 0)).
  const std::string pad_2345(52, ' '), pad_fixture(49, ' '), pad_5(60, ' '), pad_0d(62, ' ');
  const std::string prefix("\x93NUMPY\x01\x00v\x00", 10);
  EXPECT_EQ(npy_header(py::DType::f4, {2, 3, 4, 5}),
            prefix + "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4, 5), }" + pad_2345 + "\n");
  EXPECT_EQ(npy_header(py::DType::f4, {2, 94, 99, 99}),
            prefix + "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 94, 99, 99), }" + pad_fixture + "\n");
  EXPECT_EQ(npy_header(py::DType::f4, {5}),
            prefix + "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }" + pad_5 + "\n");
  EXPECT_EQ(npy_header(py::DType::f4, {}),
            prefix + "{'descr': '<f4', 'fortran_order': False, 'shape': (), }" + pad_0d + "\n");
  EXPECT_EQ(npy_header(py::DType::u1, {7}),
            prefix + "{'descr': '|u1', 'fortran_order': False, 'shape': (7,), }" + pad_5 + "\n");
  // A first axis of 19 digits: 2 growth spaces + 38 alignment spaces.
  EXPECT_EQ(npy_header(py::DType::f8, {1234567890123456789, 2}),
            prefix + "{'descr': '<f8', 'fortran_order': False, 'shape': (1234567890123456789, 2), }" +
                std::string(40, ' ') + "\n");
}

TEST(NpzWriter, ReadsBackEveryModeAndLayout) {
  TempDir dir("rb");
  const auto data = sample_f32(120);
  for (auto c : kModes) {
    for (int variant = 0; variant < 3; ++variant) {
      NpzWriteOptions opt;
      if (variant == 1) opt.zip64_everywhere = true;
      if (variant == 2) opt.whole_buffer_limit = 0;  // zlib streaming + data descriptor
      const std::string path = dir / (std::string(npz_compression_name(c)) + std::to_string(variant) + ".npz");
      {
        NpzWriter w(path, c, opt);
        w.add("data", py::DType::f4, data.data(), {2, 3, 4, 5});
        w.close();
      }
      std::vector<int64_t> shape;
      const auto back = read_npz_f32(path, "data", &shape);
      EXPECT_EQ(shape, (std::vector<int64_t>{2, 3, 4, 5})) << path;
      EXPECT_TRUE(same_bits(back, data)) << path;
      EXPECT_EQ(npz_member_names(path), std::vector<std::string>{"data.npy"});
    }
    // zero-size array
    const std::string empty = dir / (std::string("empty_") + npz_compression_name(c) + ".npz");
    write_npz(empty, "data", nullptr, {2, 0, 5}, c);
    std::vector<int64_t> shape;
    EXPECT_TRUE(read_npz_f32(empty, "data", &shape).empty());
    EXPECT_EQ(shape, (std::vector<int64_t>{2, 0, 5}));
  }
  // Only the final files remain (no temporaries).
  EXPECT_EQ(entries_in(dir.path()), 12);
}

TEST(NpzWriter, MultiMemberGenericRead) {
  TempDir dir("multi");
  const auto data = sample_f32(120);
  const std::string path = dir / "m.npz";
  NpzWriter w(path, NpzCompression::fast);
  add_multi(w, data);
  w.close();
  EXPECT_EQ(npz_member_names(path), (std::vector<std::string>{"data.npy", "spacing.npy", "locations.npy", "mask.npy",
                                                              "flags.npy", "hu.npy", "scalar.npy", "empty.npy"}));
  const py::NdArray loc = read_npz_array(path, "locations");
  EXPECT_EQ(loc.dtype, py::DType::i8);
  EXPECT_EQ(loc.shape, (std::vector<int64_t>{4, 3}));
  ASSERT_EQ(loc.bytes.size(), 96u);
  int64_t last;
  std::memcpy(&last, loc.bytes.data() + 88, 8);
  EXPECT_EQ(last, 6);
  const py::NdArray sc = read_npz_array(path, "scalar.npy");
  EXPECT_TRUE(sc.shape.empty());
  EXPECT_EQ(sc.bytes, std::string("\x00\x00\x00\x3f", 4));
  EXPECT_EQ(read_npz_array(path, "mask").dtype, py::DType::u1);
  // wrong dtype and missing member are IoErrors naming the file
  try {
    read_npz_f32(path, "spacing", nullptr);
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("<f8"), std::string::npos);
  }
  EXPECT_THROW(read_npz_f32(path, "nope", nullptr), IoError);
}

TEST(NpzWriter, PythonNumpyLoadsOursAndNumpyWritesTheSameBytes) {
  TempDir dir("py");
  const auto data = sample_f32(120);
  for (auto c : kModes) {
    const std::string m = npz_compression_name(c);
    write_npz(dir / ("f32_" + m + ".npz"), "data", data.data(), {2, 3, 4, 5}, c);
    write_npz(dir / ("empty_" + m + ".npz"), "data", nullptr, {2, 0, 5}, c);
    {
      NpzWriter w(dir / ("multi_" + m + ".npz"), c);
      add_multi(w, data);
      w.close();
    }
    NpzWriteOptions zip64;
    zip64.zip64_everywhere = true;
    NpzWriter w64(dir / ("f32_" + m + "_zip64.npz"), c, zip64);
    w64.add("data", py::DType::f4, data.data(), {2, 3, 4, 5});
    w64.close();
    NpzWriteOptions stream;
    stream.whole_buffer_limit = 0;
    NpzWriter ws(dir / ("multi_" + m + "_stream.npz"), c, stream);
    add_multi(ws, data);
    ws.close();
  }
  std::string out;
  const int rc = run_format_checker("npz '" + dir.path().string() + "' " + zlibVersion(), &out);
  if (rc == 77) GTEST_SKIP() << "/usr/bin/python3 with numpy not available: " << out;
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("15 npz files checked"), std::string::npos) << out;
}

TEST(NpzWriter, NnunetModeReproducesFixtureFileByteForByte) {
  const std::string fixture = std::string(AMOSPREP_SOURCE_DIR) +
                              "/../shared/fixtures/phantom-tiny/nnunet-v1/ExperimentPlanner3D_v21/nnUNet_preprocessed/"
                              "Task216_AMOS2022_task1/nnUNetData_plans_v2.1_stage0/amos_0130.npz";
  if (!path_exists(fixture)) GTEST_SKIP() << "fixture not found (needs ../shared beside the source tree): " << fixture;
  std::vector<int64_t> shape;
  const auto data = read_npz_f32(fixture, "data", &shape);
  ASSERT_EQ(shape.size(), 4u);
  EXPECT_EQ(shape[0], 2);
  TempDir dir("fx");
  write_npz(dir / "a.npz", "data", data.data(), shape, NpzCompression::nnunet);
  // As the pipeline writes it: image channel and segmentation from separate buffers.
  const size_t vox = data.size() / 2;
  const std::vector<std::span<const float>> pieces{std::span<const float>(data.data(), vox),
                                                   std::span<const float>(data.data() + vox, vox)};
  write_npz(dir / "a2.npz", "data", pieces, shape, NpzCompression::nnunet);
  if (std::string(zlibVersion()) != "1.2.13") GTEST_SKIP() << "fixture was compressed by zlib 1.2.13, we have " << zlibVersion();
  EXPECT_TRUE(read_file(dir / "a.npz") == read_file(fixture)) << "not byte-identical to np.savez_compressed";
  EXPECT_TRUE(read_file(dir / "a2.npz") == read_file(fixture)) << "pieces: not byte-identical to np.savez_compressed";
  // The other modes hold the same array.
  write_npz(dir / "b.npz", "data", data.data(), shape, NpzCompression::fast);
  EXPECT_TRUE(same_bits(read_npz_f32(dir / "b.npz", "data", nullptr), data));
}

TEST(NpzWriter, FailedWriteThrowsIoErrorNamingFileAndLeavesNothing) {
  TempDir dir("fail");
  const auto data = sample_f32(24);
  write_file_atomic(dir / "plainfile", "x");
  for (const std::string& path : {dir / "plainfile/sub.npz", dir / "missing-dir/a.npz"}) {
    try {
      write_npz(path, "data", data.data(), {2, 3, 4}, NpzCompression::fast);
      FAIL() << "expected IoError for " << path;
    } catch (const IoError& e) {
      EXPECT_EQ(e.code(), kExitIo);
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
  // A bad member (negative dimension) aborts the file; an unclosed writer leaves nothing either.
  EXPECT_THROW(
      {
        NpzWriter w(dir / "bad.npz", NpzCompression::none);
        w.add("data", py::DType::f4, data.data(), {2, 3, 4});
        w.add("bad", py::DType::f4, data.data(), {-1, 4});
      },
      InternalError);
  {
    NpzWriter w(dir / "unclosed.npz", NpzCompression::nnunet);
    w.add("data", py::DType::f4, data.data(), {2, 3, 4});
  }
  EXPECT_EQ(entries_in(dir.path()), 1);  // only "plainfile"
}

TEST(NpzWriter, CorruptOrTruncatedFilesGiveIoError) {
  TempDir dir("corrupt");
  const auto data = sample_f32(5000);
  for (auto c : kModes) {
    const std::string path = dir / (std::string(npz_compression_name(c)) + ".npz");
    write_npz(path, "data", data.data(), {5000}, c);
    const std::string good = read_file(path);
    std::string flipped = good;
    flipped[good.size() / 2] = static_cast<char>(flipped[good.size() / 2] ^ 0x10);
    write_file_atomic(path, flipped);
    EXPECT_THROW(read_npz_f32(path, "data", nullptr), IoError) << npz_compression_name(c);
    write_file_atomic(path, good.substr(0, good.size() - 30));
    EXPECT_THROW(read_npz_f32(path, "data", nullptr), IoError) << npz_compression_name(c);
  }
  EXPECT_THROW(read_npz_f32(dir / "absent.npz", "data", nullptr), IoError);
}

TEST(NpzWriter, PiecesGiveTheSameArrayAsOneBuffer) {
  // The pipeline writes the export array from separate channel and segmentation buffers.
  const auto data = sample_f32(2 * 3 * 50 * 70);
  const std::vector<int64_t> shape{2, 3, 50, 70};
  const size_t half = data.size() / 2;
  const std::vector<std::span<const float>> pieces{std::span<const float>(data.data(), 1000),
                                                   std::span<const float>(data.data() + 1000, half - 1000),
                                                   std::span<const float>(), std::span<const float>(data.data() + half, half)};
  TempDir dir("pieces");
  for (NpzCompression c : kModes) {
    const std::string m = npz_compression_name(c);
    write_npz(dir / (m + "_one.npz"), "data", data.data(), shape, c);
    write_npz(dir / (m + "_pieces.npz"), "data", pieces, shape, c);
    std::vector<int64_t> got_shape;
    EXPECT_TRUE(same_bits(read_npz_f32(dir / (m + "_pieces.npz"), "data", &got_shape), data)) << m;
    EXPECT_EQ(got_shape, shape);
    if (c != NpzCompression::fast)  // fast segments each piece on its own; the others stream the same bytes
      EXPECT_TRUE(read_file(dir / (m + "_one.npz")) == read_file(dir / (m + "_pieces.npz"))) << m;
  }
  EXPECT_THROW(write_npz(dir / "short.npz", "data", std::vector<std::span<const float>>{pieces[0]}, shape,
                         NpzCompression::fast),
               InternalError);
}

TEST(NpzWriter, RepeatedPiecesGiveTheRepeatedArray) {
  // Slice-mapped outputs repeat a slice several times in a row: add_piece_again stands for the previous piece.
  // Pieces of 1.5 MiB span two deflate_runs segments; the small one sits inside one.
  const int64_t big = 3 * (int64_t{1} << 17);  // floats: 1.5 MiB
  const auto a = sample_f32(static_cast<size_t>(big)), b = sample_f32(static_cast<size_t>(big) + 7);
  const std::vector<float> small(b.begin(), b.begin() + 100);
  std::vector<float> expected;
  for (int k = 0; k < 3; ++k) expected.insert(expected.end(), a.begin(), a.end());
  for (int k = 0; k < 2; ++k) expected.insert(expected.end(), small.begin(), small.end());
  const std::vector<int64_t> shape{static_cast<int64_t>(expected.size())};
  auto bytes = [](const std::vector<float>& v) {
    return std::span<const unsigned char>(reinterpret_cast<const unsigned char*>(v.data()), v.size() * 4);
  };
  TempDir dir("again");
  for (NpzCompression c : kModes) {
    for (uint64_t limit : {uint64_t(2) << 30, uint64_t(0)}) {
      const std::string m = npz_compression_name(c) + std::string(limit ? "" : "_streamed");
      SCOPED_TRACE(m);
      NpzWriteOptions opt;
      opt.whole_buffer_limit = limit;
      {
        NpzWriter w(dir / (m + ".npz"), c, opt);
        w.begin_member("data", py::DType::f4, shape);
        w.add_piece(bytes(a));
        w.add_piece_again();
        w.add_piece_again();
        w.add_piece(bytes(small));
        w.add_piece_again();
        w.end_member();
        w.close();
      }
      {
        NpzWriter plain(dir / (m + "_plain.npz"), c, opt);
        plain.add("data", py::DType::f4, expected.data(), shape);
        plain.close();
      }
      // read_npz_f32 inflates with zlib and checks the member's CRC-32 (combined for the repeats)
      EXPECT_TRUE(same_bits(read_npz_f32(dir / (m + ".npz"), "data", nullptr), expected));
      if (c != NpzCompression::fast)  // fast segments each piece on its own
        EXPECT_TRUE(read_file(dir / (m + ".npz")) == read_file(dir / (m + "_plain.npz")));
    }
  }
  NpzWriter w(dir / "over.npz", NpzCompression::fast);
  w.begin_member("data", py::DType::f4, {static_cast<int64_t>(small.size()) + 1});
  w.add_piece(bytes(small));
  EXPECT_THROW(w.add_piece_again(), InternalError);  // more bytes than the shape holds
}

TEST(NpzWriter, StreamedMemberLetsCompressedPiecesGo) {
  // begin_member / add_piece / end_member: with compression the writer is done with a piece when add_piece
  // returns (the pipeline frees the image channels before resampling the segmentation).
  const auto data = sample_f32(2 * 4 * 30 * 40);
  const std::vector<int64_t> shape{2, 4, 30, 40};
  const size_t half = data.size() / 2;
  TempDir dir("streamed");
  for (NpzCompression c : kModes) {
    const std::string m = npz_compression_name(c);
    for (uint64_t limit : {uint64_t(2) << 30, uint64_t(0)}) {
      SCOPED_TRACE(m + (limit ? "" : " streamed to the file"));
      const fs::path path = dir / (m + std::to_string(limit) + ".npz");
      NpzWriteOptions opt;
      opt.whole_buffer_limit = limit;
      NpzWriter w(path, c, opt);
      std::vector<float> first(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(half));
      std::vector<float> second(data.begin() + static_cast<std::ptrdiff_t>(half), data.end());
      w.begin_member("data", py::DType::f4, shape);
      w.add_piece({reinterpret_cast<const unsigned char*>(first.data()), first.size() * 4});
      if (w.releases_pieces()) std::fill(first.begin(), first.end(), 12345.0f);  // gone for the writer
      w.add_piece({reinterpret_cast<const unsigned char*>(second.data()), second.size() * 4});
      w.end_member();
      w.close();
      EXPECT_EQ(w.releases_pieces(), c != NpzCompression::none);
      EXPECT_TRUE(same_bits(read_npz_f32(path, "data", nullptr), data));
    }
  }
  // Misuse is an internal error, and nothing is left behind.
  {
    NpzWriter w(dir / "short.npz", NpzCompression::fast);
    w.begin_member("data", py::DType::f4, shape);
    w.add_piece({reinterpret_cast<const unsigned char*>(data.data()), 16});
    EXPECT_THROW(w.end_member(), InternalError);
  }
  {
    NpzWriter w(dir / "open.npz", NpzCompression::nnunet);
    w.begin_member("data", py::DType::f4, shape);
    EXPECT_THROW(w.close(), InternalError);
  }
  EXPECT_FALSE(fs::exists(dir / "short.npz"));
  EXPECT_FALSE(fs::exists(dir / "open.npz"));
}
