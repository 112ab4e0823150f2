#pragma once
// Human-readable JSON mirrors of the pickles (e.g. plans.json next to the plans .pkl).
#include <string>

#include <nlohmann/json.hpp>

#include "amosprep/pyobj.hpp"

namespace amosprep {

/// JSON view of `v`, insertion order kept: dict keys become strings as Python's json.dumps makes them (int 3 ->
/// "3", True -> "true", None -> "null"; tuple keys -> their Python repr), lists and tuples -> arrays, ndarrays ->
/// nested arrays (0-d -> a number), numpy scalars -> plain numbers/bools, NaN and +-inf -> null. float32 values
/// are written with their shortest decimal form (0.1f -> 0.1), which reads back to the same float32.
nlohmann::ordered_json to_json(const py::Value& v);
/// to_json(v).dump(2) plus a newline, byte for byte, without building the JSON tree.
std::string json_mirror_text(const py::Value& v);
/// Writes json_mirror_text(v) atomically; throws IoError naming `path`.
void write_json_mirror(const std::string& path, const py::Value& v);

}  // namespace amosprep
