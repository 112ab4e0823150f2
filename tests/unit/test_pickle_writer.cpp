#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "amosprep/error.hpp"
#include "amosprep/fsutil.hpp"
#include "amosprep/json_mirror.hpp"
#include "amosprep/pickle_writer.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using namespace amosprep;

namespace amosprep::testdata {

template <class T>
py::Value raw_array(py::DType t, std::vector<T> v, std::vector<int64_t> shape) {
  return py::Value(py::NdArray{t, std::move(shape), std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T))});
}

/// The value of expected_types() in tests/python/check_formats.py (also used by test_json_mirror.cpp).
py::Value expected_types() {
  using py::Value;
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  std::vector<Value> big_list;
  for (int i = 0; i < 2500; ++i) big_list.emplace_back(i);
  std::vector<double> large(20000);
  for (size_t i = 0; i < large.size(); ++i) large[i] = static_cast<double>(i) * 0.5;
  return py::odict({
      {"none", Value()}, {"true", true}, {"false", false},
      {"i0", 0}, {"i255", 255}, {"i256", 256}, {"i65535", 65535}, {"i65536", 65536}, {"neg1", -1},
      {"i32min", int64_t(-2147483648LL)}, {"i32max", int64_t(2147483647)}, {"i2pow31", int64_t(1) << 31},
      {"u32max", int64_t(4294967295LL)}, {"i2pow40", int64_t(1) << 40}, {"neg_i2pow31m1", int64_t(-2147483649LL)},
      {"neg_i2pow39", -(int64_t(1) << 39)}, {"i64min", std::numeric_limits<int64_t>::min()},
      {"i64max", std::numeric_limits<int64_t>::max()},
      {"f_tenth", 0.1}, {"f_negzero", -0.0}, {"f_nan", nan}, {"f_inf", inf}, {"f_denorm", 5e-324}, {"f_big", 1e300},
      {"s_unicode", "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80"}, {"s_long", std::string(300, 'x')}, {"s_empty", ""},
      {"t0", py::tuple({})}, {"t1", py::tuple({1})}, {"t2", py::tuple({1, 2.5})}, {"t3", py::tuple({1, "b", Value()})},
      {"t5", py::tuple({1, 2, 3, 4, 5})},
      {"l0", py::list({})}, {"l1", py::list({py::list({0, 33})})},
      {"l_mixed", py::list({1, "a", Value(), py::list({2}), py::tuple({3})})}, {"l_big", py::list(big_list)},
      {"d_int_keys", py::dict({{3, "c"}, {1, "a"}, {2, "b"}})}, {"od_int", py::odict({{0, false}})},
      {"od_empty", py::odict({})}, {"d_empty", py::dict({})}, {"d_tuple_key", py::dict({{py::tuple({1, 2}), "tk"}})},
      {"np_i8", py::np_int64(-7)}, {"np_i8_big", py::np_int64((int64_t(1) << 40) + 3)},
      {"np_f4", py::np_float32(0.1f)}, {"np_f8", py::np_float64(2.5)}, {"np_b", py::np_bool(true)},
      {"np_b_false", py::np_bool(false)},
      {"nd_f8", py::nd_f8({5.0, 0.8369140625, 0.837890625})},
      {"nd_i8_2d", py::nd_i8({-5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6}, {4, 3})},
      {"nd_f4", py::nd_f4({-1.0f, 0.0f, 0.1f, 15.0f})},
      {"nd_empty", py::nd_i8({}, {0, 3})},
      {"nd_u1", raw_array<uint8_t>(py::DType::u1, {0, 1, 255}, {3})},
      {"nd_b1", raw_array<uint8_t>(py::DType::b1, {1, 0}, {2})},
      {"nd_i2", raw_array<int16_t>(py::DType::i2, {-1024, 3071}, {2})},
      {"nd_i4", raw_array<int32_t>(py::DType::i4, {-5, 2147483647}, {2})},
      {"nd_0d", raw_array<double>(py::DType::f8, {2.5}, {})},
      {"nd_large", py::nd_f8(large)},
      {"class_locations", py::dict({{1, py::nd_i8({1, 2, 3, 4, 5, 6}, {2, 3})}, {2, py::list({})},
                                    {15, py::nd_i8({}, {0, 3})}})},
  });
}

}  // namespace amosprep::testdata

namespace {

using test::run_format_checker;
using test::TempDir;

std::string hex_to_bytes(const std::string& hex) {
  auto nibble = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>(nibble(hex[2 * i]) * 16 + nibble(hex[2 * i + 1]));
  return out;
}

py::DType dtype_of(const std::string& descr) {
  for (py::DType t : {py::DType::f4, py::DType::f8, py::DType::i8, py::DType::i4, py::DType::i2, py::DType::u1,
                      py::DType::b1})
    if (descr == py::dtype_descr(t)) return t;
  throw std::runtime_error("unsupported dtype " + descr);
}

// Inverse of typed() in check_formats.py.
py::Value from_typed(const nlohmann::json& j) {
  const std::string t = j.at("t");
  if (t == "none") return py::Value();
  if (t == "bool") return py::Value(j.at("v").get<bool>());
  if (t == "int") return py::Value(static_cast<int64_t>(std::stoll(j.at("v").get<std::string>())));
  if (t == "float") {
    const std::string b = hex_to_bytes(j.at("v"));
    double d;
    std::memcpy(&d, b.data(), 8);
    return py::Value(d);
  }
  if (t == "str") return py::Value(j.at("v").get<std::string>());
  if (t == "list" || t == "tuple") {
    std::vector<py::Value> items;
    for (const auto& x : j.at("v")) items.push_back(from_typed(x));
    return t == "list" ? py::list(std::move(items)) : py::tuple(std::move(items));
  }
  if (t == "dict" || t == "odict") {
    std::vector<std::pair<py::Value, py::Value>> items;
    for (const auto& kv : j.at("v")) items.emplace_back(from_typed(kv.at(0)), from_typed(kv.at(1)));
    return t == "dict" ? py::dict(std::move(items)) : py::odict(std::move(items));
  }
  if (t == "nd") return py::Value(py::NdArray{dtype_of(j.at("dtype")), j.at("shape").get<std::vector<int64_t>>(), hex_to_bytes(j.at("v"))});
  if (t == "sc") return py::Value(py::NpScalar{dtype_of(j.at("dtype")), hex_to_bytes(j.at("v"))});
  throw std::runtime_error("unknown typed node " + t);
}

}  // namespace

TEST(PickleWriter, SimpleValuesAreByteIdenticalToPython) {
  // Golden bytes: pickletools.optimize(pickle.dumps(v, protocol=4)) with Python 3.11.
  EXPECT_EQ(pickle_dumps(py::Value(int64_t(1) << 31)), hex_to_bytes("80049508000000000000008a0500000080002e"));
  EXPECT_EQ(pickle_dumps(py::Value(std::numeric_limits<int64_t>::min())),
            hex_to_bytes("8004950b000000000000008a0800000000000000802e"));
  EXPECT_EQ(pickle_dumps(py::Value(0.1)), hex_to_bytes("8004950a00000000000000473fb999999999999a2e"));
  EXPECT_EQ(pickle_dumps(py::Value(300)), hex_to_bytes("80049504000000000000004d2c012e"));
  EXPECT_EQ(pickle_dumps(py::Value(-1)), hex_to_bytes("80049506000000000000004affffffff2e"));
  EXPECT_EQ(pickle_dumps(py::Value(true)), hex_to_bytes("8004882e"));
  EXPECT_EQ(pickle_dumps(py::Value()), hex_to_bytes("80044e2e"));
  // ['a', (1, 2.5), {3: 'c'}, (), [], {}, (1, 2, 3, 4)]
  const py::Value mixed = py::list({"a", py::tuple({1, 2.5}), py::dict({{3, "c"}}), py::tuple({}), py::list({}),
                                    py::dict({}), py::tuple({1, 2, 3, 4})});
  EXPECT_EQ(pickle_dumps(mixed),
            hex_to_bytes("80049527000000000000005d288c01614b01474004000000000000867d4b038c016373295d7d284b014b024b034b04"
                         "74652e"));
}

TEST(PickleWriter, RejectsInvalidValues) {
  EXPECT_THROW(pickle_dumps(py::Value(std::string("\xff\xfe"))), InternalError);
  EXPECT_THROW(pickle_dumps(py::Value(std::string("\xed\xa0\x80"))), InternalError);  // lone surrogate
  py::NdArray bad{py::DType::f8, {2, 2}, std::string(24, '\0')};
  EXPECT_THROW(pickle_dumps(py::Value(bad)), InternalError);
  try {
    write_pickle("/nonexistent-dir-amosprep/x.pkl", py::Value(1));
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir-amosprep/x.pkl"), std::string::npos);
  }
}

TEST(PickleWriter, PythonLoadsEveryTypeExactly) {
  TempDir dir("types");
  write_pickle(dir / "types.pkl", testdata::expected_types());
  std::string out;
  const int rc = run_format_checker("pickle-types '" + (dir / "types.pkl") + "'", &out);
  if (rc == 77) GTEST_SKIP() << "/usr/bin/python3 with numpy not available: " << out;
  EXPECT_EQ(rc, 0) << out;
}

TEST(PickleWriter, FixturePicklesRoundTripExactly) {
  // Every pkl nnU-Net wrote for the fixtures is rebuilt as a py::Value, pickled by us and compared in Python with
  // the original (types, key order, values); the JSON mirror of each is checked too.
  const fs::path fixtures = fs::path(AMOSPREP_SOURCE_DIR) / ".." / "shared" / "fixtures";
  if (!fs::exists(fixtures)) GTEST_SKIP() << "fixtures not found (needs ../shared beside the source tree)";
  std::vector<std::string> pkls;
  for (const auto& e : fs::recursive_directory_iterator(fixtures))
    if (e.is_regular_file() && e.path().extension() == ".pkl") pkls.push_back(e.path().string());
  std::sort(pkls.begin(), pkls.end());
  ASSERT_GT(pkls.size(), 10u);
  TempDir dir("fixtures");
  std::string args = "fixture-export '" + dir.path().string() + "'";
  for (const auto& p : pkls) args += " '" + p + "'";
  std::string out;
  int rc = run_format_checker(args, &out);
  if (rc == 77) GTEST_SKIP() << "/usr/bin/python3 with numpy not available: " << out;
  ASSERT_EQ(rc, 0) << out;
  const auto manifest = nlohmann::json::parse(read_file(dir / "manifest.json"));
  ASSERT_EQ(manifest.size(), pkls.size());
  for (const auto& m : manifest) {
    const py::Value v = from_typed(nlohmann::json::parse(read_file(m.at("typed").get<std::string>())));
    // plain writes: 2 x 71 fsyncs would dominate the run time (write_pickle / write_json_mirror add only that)
    std::ofstream(m.at("ours").get<std::string>(), std::ios::binary) << pickle_dumps(v);
    std::ofstream(m.at("mirror").get<std::string>()) << to_json(v).dump(2) << "\n";
  }
  out.clear();
  rc = run_format_checker("fixture-compare '" + dir.path().string() + "'", &out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find(std::to_string(pkls.size()) + " fixture pickles compared"), std::string::npos) << out;
}
