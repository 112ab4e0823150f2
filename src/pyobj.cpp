#include "amosprep/pyobj.hpp"

#include <cstring>
#include <stdexcept>

namespace amosprep::py {

const char* dtype_descr(DType t) {
  switch (t) {
    case DType::f4: return "<f4";
    case DType::f8: return "<f8";
    case DType::i8: return "<i8";
    case DType::i4: return "<i4";
    case DType::i2: return "<i2";
    case DType::u1: return "|u1";
    case DType::b1: return "|b1";
  }
  return "?";
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f4: case DType::i4: return 4;
    case DType::f8: case DType::i8: return 8;
    case DType::i2: return 2;
    case DType::u1: case DType::b1: return 1;
  }
  return 0;
}

Value list(std::vector<Value> items) { return Value(List{std::move(items)}); }
Value tuple(std::vector<Value> items) { return Value(Tuple{std::move(items)}); }
Value dict(std::vector<std::pair<Value, Value>> items) { return Value(Dict{false, std::move(items)}); }
Value odict(std::vector<std::pair<Value, Value>> items) { return Value(Dict{true, std::move(items)}); }

template <class T>
static std::string raw_bytes(const T* p, size_t n) {
  return std::string(reinterpret_cast<const char*>(p), n * sizeof(T));
}

Value np_int64(int64_t x) { return Value(NpScalar{DType::i8, raw_bytes(&x, 1)}); }
Value np_float32(float x) { return Value(NpScalar{DType::f4, raw_bytes(&x, 1)}); }
Value np_float64(double x) { return Value(NpScalar{DType::f8, raw_bytes(&x, 1)}); }
Value np_bool(bool x) {
  const unsigned char b = x ? 1 : 0;
  return Value(NpScalar{DType::b1, raw_bytes(&b, 1)});
}

template <class T>
static Value make_nd(DType t, const std::vector<T>& values, std::vector<int64_t> shape) {
  if (shape.empty()) shape = {static_cast<int64_t>(values.size())};
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  if (n != static_cast<int64_t>(values.size())) throw std::invalid_argument("ndarray: shape does not match values");
  return Value(NdArray{t, std::move(shape), raw_bytes(values.data(), values.size())});
}

Value nd_f8(const std::vector<double>& values, std::vector<int64_t> shape) {
  return make_nd(DType::f8, values, std::move(shape));
}
Value nd_f4(const std::vector<float>& values, std::vector<int64_t> shape) {
  return make_nd(DType::f4, values, std::move(shape));
}
Value nd_i8(const std::vector<int64_t>& values, std::vector<int64_t> shape) {
  return make_nd(DType::i8, values, std::move(shape));
}

void dict_set(Value& d, const Value& key, Value value) {
  auto& items = d.as<Dict>().items;
  for (auto& kv : items)
    if (kv.first == key) {
      kv.second = std::move(value);
      return;
    }
  items.emplace_back(key, std::move(value));
}

const Value* dict_get(const Value& d, const Value& key) {
  if (!d.is<Dict>()) return nullptr;
  for (const auto& kv : d.as<Dict>().items)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

static bool items_equal(const std::vector<Value>& a, const std::vector<Value>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!(a[i] == b[i])) return false;
  return true;
}

bool operator==(const Value& a, const Value& b) {
  if (a.v.index() != b.v.index()) return false;
  return std::visit(
      [&](const auto& x) -> bool {
        using T = std::decay_t<decltype(x)>;
        const auto& y = std::get<T>(b.v);
        if constexpr (std::is_same_v<T, None>) return true;
        else if constexpr (std::is_same_v<T, List> || std::is_same_v<T, Tuple>) return items_equal(x.items, y.items);
        else if constexpr (std::is_same_v<T, Dict>) {
          if (x.ordered != y.ordered || x.items.size() != y.items.size()) return false;
          for (size_t i = 0; i < x.items.size(); ++i)
            if (!(x.items[i].first == y.items[i].first) || !(x.items[i].second == y.items[i].second)) return false;
          return true;
        } else if constexpr (std::is_same_v<T, NdArray>) return x.dtype == y.dtype && x.shape == y.shape && x.bytes == y.bytes;
        else if constexpr (std::is_same_v<T, NpScalar>) return x.dtype == y.dtype && x.bytes == y.bytes;
        else return x == y;
      },
      a.v);
}

}  // namespace amosprep::py
