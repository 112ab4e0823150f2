#pragma once
// Python pickles (protocol 4, as pickle.dumps(obj, protocol=4) from Python 3.11 with numpy 1.24 writes them)
// of a py::Value tree, loadable by nnU-Net v1 with plain pickle.load.
#include <string>

#include "amosprep/pyobj.hpp"

namespace amosprep {

/// Pickle bytes of `v`: protocol 4 with 64 KiB frames. OrderedDict via collections.OrderedDict() + SETITEMS,
/// ndarrays via numpy.core.multiarray._reconstruct + BUILD, numpy scalars via numpy.core.multiarray.scalar,
/// ints beyond 32 bits via LONG1, floats as BINFLOAT. Globals and dtypes are memoized. Throws InternalError for
/// a str that is not valid UTF-8 or an ndarray whose byte count does not match its shape.
std::string pickle_dumps(const py::Value& v);
/// Writes pickle_dumps(v) atomically (temporary name, fsync, rename); throws IoError naming `path`.
void write_pickle(const std::string& path, const py::Value& v);

}  // namespace amosprep
