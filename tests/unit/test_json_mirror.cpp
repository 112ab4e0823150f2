#include <gtest/gtest.h>

#include <filesystem>
#include <cstring>
#include <limits>

#include "amosprep/error.hpp"
#include "amosprep/fsutil.hpp"
#include "amosprep/json_mirror.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using namespace amosprep;

namespace amosprep::testdata {
py::Value expected_types();  // test_pickle_writer.cpp
}

TEST(JsonMirror, ConvertsKeysArraysScalarsAndNonFinite) {
  const double inf = std::numeric_limits<double>::infinity();
  const py::Value v = py::odict({
      {"a", 1},
      {3, py::tuple({1.5, std::numeric_limits<double>::quiet_NaN()})},
      {"arr", py::nd_f4({0.1f, -2.0f}, {1, 2})},
      {"s", py::np_float32(0.1f)},
      {"b", py::np_bool(true)},
      {true, py::Value()},
      {py::Value(), 0.25},
      {2.5, "float key"},
      {"i", py::np_int64(int64_t(1) << 40)},
      {py::tuple({1, 2}), "x"},
      {"e", py::nd_i8({}, {0, 3})},
      {"z", py::Value(py::NdArray{py::DType::f8, {}, std::string("\0\0\0\0\0\0\x04@", 8)})},
      {"inf", -inf},
      {"od", py::odict({{0, false}})},
  });
  EXPECT_EQ(to_json(v).dump(),
            R"js({"a":1,"3":[1.5,null],"arr":[[0.1,-2.0]],"s":0.1,"b":true,"true":null,"null":0.25,)js"
            R"js("2.5":"float key","i":1099511627776,"(1, 2)":"x","e":[],"z":2.5,"inf":null,"od":{"0":false}})js");
}

TEST(JsonMirror, WritesIndentedFileAtomically) {
  const test::TempDir dir("json");
  const std::string path = dir / "m.json";
  write_json_mirror(path, py::odict({{"k", py::list({1, 2})}}));
  EXPECT_EQ(read_file(path), "{\n  \"k\": [\n    1,\n    2\n  ]\n}\n");
  EXPECT_THROW(write_json_mirror("/nonexistent-dir-amosprep/m.json", py::Value(1)), IoError);
}

TEST(JsonMirror, PythonSeesTheDocumentedViewOfEveryType) {
  const test::TempDir dir("json_py");
  const std::string path = dir / "types.json";
  write_json_mirror(path, testdata::expected_types());
  std::string out;
  const int rc = test::run_format_checker("json-types '" + path + "'", &out);
  if (rc == 77) GTEST_SKIP() << "/usr/bin/python3 with numpy not available: " << out;
  EXPECT_EQ(rc, 0) << out;
}

TEST(JsonMirror, DirectTextEqualsTheIndentedDumpOfTheJsonTree) {
  std::vector<char> coords(3 * 4 * sizeof(int64_t));
  for (size_t i = 0; i < 12; ++i) {
    const int64_t v = static_cast<int64_t>(i * 977) - 3000;
    std::memcpy(coords.data() + i * sizeof v, &v, sizeof v);
  }
  const py::Value locs = py::NdArray{py::DType::i8, {4, 3}, std::string(coords.begin(), coords.end())};
  const py::Value empty = py::NdArray{py::DType::i8, {0, 3}, std::string()};
  const std::vector<py::Value> values = {
      testdata::expected_types(),
      py::odict({{"class_locations", py::dict({{py::Value(int64_t{1}), locs}, {py::Value(int64_t{2}), empty}})},
                 {"k", py::list({})},
                 {"1", py::Value(0.1)},
                 {"d", py::odict({})}}),
      py::dict({{py::Value(int64_t{1}), py::Value(1)}, {py::Value(std::string("1")), py::Value(2)}}),  // one key
      py::Value(3.5)};
  for (const py::Value& v : values) EXPECT_EQ(json_mirror_text(v), to_json(v).dump(2) + "\n");
}
