#pragma once
// JSON text byte-identical to Python's json.dump(obj, f, sort_keys=True, indent=4).
#include <string>

#include <nlohmann/json.hpp>

namespace amosprep {

/// Serialises `j` exactly as Python's `json.dumps(obj, sort_keys=sort_keys, indent=indent)` does with default
/// settings: ensure_ascii (non-ASCII as lowercase `\uXXXX`, surrogate pairs above U+FFFF), item separator ","
/// at line ends, key separator ": ", floats as Python's repr (shortest round trip, e.g. `1.0`, `1e-05`,
/// `1e+16`), `NaN` / `Infinity` / `-Infinity`, empty containers as `[]` / `{}`, no trailing newline. Keys are
/// sorted by code point when `sort_keys`, else kept in insertion order. indent < 0 gives Python's compact
/// `indent=None` form (", " and ": "). Throws InternalError on invalid UTF-8.
std::string python_json_dumps(const nlohmann::ordered_json& j, int indent = 4, bool sort_keys = true);

/// Python's `repr(float)` of a double (shortest round-trip digits, Python's choice of notation).
std::string python_float_repr(double v);

}  // namespace amosprep
