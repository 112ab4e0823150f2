#pragma once
// A small model of the Python values nnU-Net pickles (dict, OrderedDict, list, tuple, str, int, float, bool,
// None, numpy arrays and numpy scalars), so that pickle and JSON writers share one tree.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace amosprep::py {

struct Value;

/// numpy dtype codes we use, as numpy writes them in `descr`.
enum class DType { f4, f8, i8, i4, i2, u1, b1 };
const char* dtype_descr(DType t);  ///< "<f4", "<f8", "<i8", "<i4", "<i2", "|u1", "|b1"
size_t dtype_size(DType t);

struct None {};
struct List { std::vector<Value> items; };
struct Tuple { std::vector<Value> items; };
/// dict or collections.OrderedDict; insertion order is kept either way.
struct Dict {
  bool ordered = false;
  std::vector<std::pair<Value, Value>> items;
};
/// numpy.ndarray (C order, little-endian bytes).
struct NdArray {
  DType dtype = DType::f8;
  std::vector<int64_t> shape;
  std::string bytes;
};
/// numpy scalar such as np.int64(3), np.float32(0.5) or np.bool_(True).
struct NpScalar {
  DType dtype = DType::f8;
  std::string bytes;
};

struct Value {
  std::variant<None, bool, int64_t, double, std::string, List, Tuple, Dict, NdArray, NpScalar> v;

  Value() : v(None{}) {}
  Value(bool b) : v(b) {}
  Value(int i) : v(static_cast<int64_t>(i)) {}
  Value(int64_t i) : v(i) {}
  Value(double d) : v(d) {}
  Value(const char* s) : v(std::string(s)) {}
  Value(std::string s) : v(std::move(s)) {}
  Value(List l) : v(std::move(l)) {}
  Value(Tuple t) : v(std::move(t)) {}
  Value(Dict d) : v(std::move(d)) {}
  Value(NdArray a) : v(std::move(a)) {}
  Value(NpScalar s) : v(std::move(s)) {}

  template <class T> bool is() const { return std::holds_alternative<T>(v); }
  template <class T> const T& as() const { return std::get<T>(v); }
  template <class T> T& as() { return std::get<T>(v); }
};

// ---- builders ------------------------------------------------------------------------------------------
Value list(std::vector<Value> items);
Value tuple(std::vector<Value> items);
Value dict(std::vector<std::pair<Value, Value>> items);          ///< plain dict
Value odict(std::vector<std::pair<Value, Value>> items);         ///< collections.OrderedDict
Value np_int64(int64_t x);
Value np_float32(float x);
Value np_float64(double x);
Value np_bool(bool x);
/// 1-D or n-D arrays from contiguous C-order values.
Value nd_f8(const std::vector<double>& values, std::vector<int64_t> shape = {});
Value nd_f4(const std::vector<float>& values, std::vector<int64_t> shape = {});
Value nd_i8(const std::vector<int64_t>& values, std::vector<int64_t> shape = {});

/// Adds or replaces `key` in a Dict value (keeps the position of an existing key).
void dict_set(Value& d, const Value& key, Value value);
/// Looks up a str/int key in a Dict value; nullptr when absent.
const Value* dict_get(const Value& d, const Value& key);
bool operator==(const Value& a, const Value& b);

}  // namespace amosprep::py
