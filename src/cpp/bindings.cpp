// The only file that includes pybind11: argument checks with messages that name the fix,
// output allocation with the GIL held, and the GIL released around the pure C++ compute.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "magray/cpu.hpp"
#include "magray/hash.hpp"
#include "magray/kernels.hpp"
#include "magray/ops.hpp"
#include "magray/utf8.hpp"

namespace py = pybind11;
using namespace magray;

namespace {

// Hashing more than this many bytes pays for dropping and retaking the GIL.
constexpr size_t kReleaseGilBytes = 1u << 15;

std::string fix_hint(const char* name) {
    return std::string("pass np.ascontiguousarray(") + name + ", dtype=np.float32)";
}

// A float32, C-contiguous, aligned array of the given rank (no silent copies).
py::array checked_f32(const py::handle& obj, const char* name, int ndim_lo, int ndim_hi) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string(name) + " must be a numpy array, not " +
                             std::string(py::str(py::type::handle_of(obj).attr("__name__"))) + "; " +
                             fix_hint(name));
    py::array a = py::reinterpret_borrow<py::array>(obj);
    if (!a.dtype().is(py::dtype::of<float>()))
        throw py::type_error(std::string(name) + " has dtype " + std::string(py::str(a.dtype())) +
                             ", expected float32; " + fix_hint(name));
    if (!(a.flags() & py::array::c_style) || !(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
        throw py::type_error(std::string(name) + " is not C-contiguous; " + fix_hint(name));
    if (a.ndim() < ndim_lo || a.ndim() > ndim_hi) {
        std::string want = ndim_lo == ndim_hi ? std::to_string(ndim_lo) + "-D"
                                              : std::to_string(ndim_lo) + "-D or " + std::to_string(ndim_hi) + "-D";
        throw py::value_error(std::string(name) + " must be " + want + ", got shape with " +
                              std::to_string(a.ndim()) + " dimensions");
    }
    return a;
}

// What one item hashes: raw bytes (width 0: bytes, or ASCII str whose storage is its
// UTF-8), or str code units of width 1, 2 or 4 still to be encoded as UTF-8.
struct Item {
    const void* data;
    size_t len;  // bytes for width 0, code units otherwise
    int width;
};

// Reads a str or bytes object's storage without calling into Python (safe without the GIL
// while the object is kept alive: both types are immutable). False for anything else, and
// for a str not yet "ready" (Python < 3.12), which the caller handles with the GIL held.
inline bool peek(PyObject* o, Item& it) noexcept {
    if (PyUnicode_Check(o)) {
#if PY_VERSION_HEX < 0x030C0000
        if (!PyUnicode_IS_READY(o)) return false;
#endif
        const size_t n = static_cast<size_t>(PyUnicode_GET_LENGTH(o));
        if (PyUnicode_IS_COMPACT_ASCII(o)) {
            it = {PyUnicode_DATA(o), n, 0};
        } else {
            it = {PyUnicode_DATA(o), n, static_cast<int>(PyUnicode_KIND(o))};
        }
        return true;
    }
    if (PyBytes_Check(o)) {
        it = {PyBytes_AS_STRING(o), static_cast<size_t>(PyBytes_GET_SIZE(o)), 0};
        return true;
    }
    return false;
}

// The slow path for one object, with the GIL held: readies a legacy str, or raises the
// TypeError that names the item.
template <typename NameFn>
Item as_item(PyObject* o, NameFn name_of) {
    if (PyUnicode_Check(o)) {
#if PY_VERSION_HEX < 0x030C0000
        if (PyUnicode_READY(o) < 0) throw py::error_already_set();
#endif
    }
    Item it;
    if (peek(o, it)) return it;
    throw py::type_error(name_of() + " is " + Py_TYPE(o)->tp_name + "; pass str (hashed as UTF-8) or bytes");
}

// The encoder for str code units: AVX-512 VBMI2 where the active instruction set allows it.
using Utf8Fn = size_t (*)(const void*, size_t, int, char*) noexcept;

Utf8Fn utf8_for(Isa isa) {
#if defined(MAGRAY_X86)
    if (isa == Isa::avx512 && cpu_features().avx512vbmi2) return &utf8_encode_avx512;
#endif
    (void)isa;
    return &utf8_encode;
}

// Encodes str items into a growing buffer; the bytes item's own storage otherwise.
class Hasher {
public:
    Hasher(uint64_t seed, Isa isa) : seed_(seed), isa_(isa), utf8_(utf8_for(isa)) {}

    // Hashes one item into out[0..16); false if a str holds a lone surrogate.
    bool hash(const Item& it, uint8_t* out) {
        const void* p = it.data;
        size_t len = it.len;
        if (it.width != 0) {
            const size_t need = utf8_max_size(it.len, it.width);
            if (scratch_.size() < need) scratch_.resize(need);
            len = utf8_(it.data, it.len, it.width, scratch_.data());
            if (len == SIZE_MAX) return false;
            p = scratch_.data();
        }
        hash128_canonical(xxh3_128(p, len, seed_, isa_), out);
        return true;
    }

    // Hashes objs[i..n) into out + 16 * i, reading each object once. The objects lie
    // scattered over the heap, so the first kLines cache lines of each are prefetched kAhead
    // items ahead: blindly, from the object's address alone, since a prefetch that first
    // read the length would stall on that load (measured; a prefetch past the object's end
    // is harmless). The rest of a longer object is prefetched kAhead / 2 items ahead, when
    // its header is in cache. Returns the index of the first object it cannot handle (not str or
    // bytes, a legacy str, or a lone surrogate), or n. Calls no Python API.
    size_t run(PyObject* const* objs, size_t i, size_t n, uint8_t* out) {
        constexpr size_t kAhead = 32;
        constexpr size_t kMid = kAhead / 2;
        constexpr size_t kLines = 8;
        constexpr size_t kMaxPrefetch = 4096;
        // Each object is peeked once, kMid items ahead, and its Item kept until its turn.
        Item items[kMid];
        bool ok[kMid];
        for (size_t j = i; j < i + kMid && j < n; ++j) ok[j % kMid] = peek(objs[j], items[j % kMid]);
        for (; i < n; ++i) {
            if (i + kAhead < n) {
                const char* ahead = reinterpret_cast<const char*>(objs[i + kAhead]);
                for (size_t line = 0; line < kLines; ++line) __builtin_prefetch(ahead + 64 * line);
            }
            const Item it = items[i % kMid];
            if (!ok[i % kMid]) return i;
            // Half as far ahead the header has arrived: a long object gets its other lines.
            if (i + kMid < n) {
                Item& mid = items[i % kMid];
                ok[i % kMid] = peek(objs[i + kMid], mid);
                if (ok[i % kMid]) {
                    const char* obj = reinterpret_cast<const char*>(objs[i + kMid]);
                    const char* end = static_cast<const char*>(mid.data) +
                                      mid.len * static_cast<size_t>(mid.width ? mid.width : 1);
                    for (const char* p = obj + 64 * kLines; p < end && p < obj + kMaxPrefetch; p += 64)
                        __builtin_prefetch(p);
                }
            }
            if (!hash(it, out + 16 * i)) return i;
        }
        return n;
    }

private:
    uint64_t seed_;
    Isa isa_;
    Utf8Fn utf8_;
    std::vector<char> scratch_;
};

// Raises the UnicodeEncodeError that str.encode("utf-8") gives for this object.
[[noreturn]] void raise_unencodable(PyObject* o) {
    Py_ssize_t n = 0;
    if (PyUnicode_AsUTF8AndSize(o, &n) == nullptr) throw py::error_already_set();
    throw py::value_error("a str could not be encoded as UTF-8");
}

uint64_t to_seed(const py::int_& seed) {
    const unsigned long long v = PyLong_AsUnsignedLongLong(seed.ptr());
    if (v == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
        PyErr_Clear();
        throw py::value_error("seed must be an int in [0, 2**64)");
    }
    return static_cast<uint64_t>(v);
}

py::bytes hash128(py::handle data, py::int_ seed) {
    const uint64_t s = to_seed(seed);
    uint8_t out[16];
    if (PyByteArray_Check(data.ptr()) || PyMemoryView_Check(data.ptr())) {
        // Hashed with the GIL held: a bytearray could otherwise change under us.
        Py_buffer view;
        if (PyObject_GetBuffer(data.ptr(), &view, PyBUF_C_CONTIGUOUS) != 0) {
            PyErr_Clear();
            throw py::type_error("data must be a C-contiguous buffer; pass bytes(data)");
        }
        hash128_canonical(xxh3_128(view.buf, static_cast<size_t>(view.len), s, active_isa()), out);
        PyBuffer_Release(&view);
    } else {
        const Item item = as_item(data.ptr(), [] { return std::string("data"); });
        Hasher hasher(s, active_isa());
        bool ok;
        if (item.len >= kReleaseGilBytes) {
            py::gil_scoped_release nogil;
            ok = hasher.hash(item, out);
        } else {
            ok = hasher.hash(item, out);
        }
        if (!ok) raise_unencodable(data.ptr());
    }
    return py::bytes(reinterpret_cast<const char*>(out), 16);
}

py::array_t<uint8_t> hash128_many(py::handle items, py::int_ seed) {
    const uint64_t s = to_seed(seed);
    if (PyUnicode_Check(items.ptr()) || PyBytes_Check(items.ptr()))
        throw py::type_error("items must be a sequence of str or bytes, not a single " +
                             std::string(Py_TYPE(items.ptr())->tp_name) + "; use hash128() for one item");
    // Without the GIL the items must stay alive even if another thread edits the caller's
    // sequence: a tuple's items live as long as the tuple, so tuples (and other sequences,
    // copied into one) are hashed without the GIL. A list is hashed with the GIL held:
    // taking a reference to every item first would cost more than the hashing.
    py::object holder;
    PyObject* const* objs = nullptr;
    size_t n = 0;
    bool may_release = true;
    if (PyList_Check(items.ptr())) {
        n = static_cast<size_t>(PyList_GET_SIZE(items.ptr()));
        objs = n ? &PyList_GET_ITEM(items.ptr(), 0) : nullptr;
        may_release = false;
    } else {
        holder = PyTuple_Check(items.ptr())
                     ? py::reinterpret_borrow<py::object>(items)
                     : py::reinterpret_steal<py::object>(PySequence_Tuple(items.ptr()));
        if (!holder) {
            PyErr_Clear();
            throw py::type_error("items must be a sequence of str or bytes");
        }
        n = static_cast<size_t>(PyTuple_GET_SIZE(holder.ptr()));
        objs = n ? &PyTuple_GET_ITEM(holder.ptr(), 0) : nullptr;
    }
    py::array_t<uint8_t> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(16)});
    uint8_t* dst = out.mutable_data();
    Hasher hasher(s, active_isa());
    // Releasing the GIL pays for batches of this many items and more.
    constexpr size_t kReleaseGilItems = 256;
    size_t i = 0;
    while (i < n) {
        size_t stop;
        if (may_release && n - i >= kReleaseGilItems) {
            py::gil_scoped_release nogil;
            stop = hasher.run(objs, i, n, dst);
        } else {
            stop = hasher.run(objs, i, n, dst);
        }
        if (stop == n) break;
        // An object the fast path left alone: ready it or name the bad item, with the GIL.
        const Item it = as_item(objs[stop], [stop] { return "items[" + std::to_string(stop) + "]"; });
        if (!hasher.hash(it, dst + 16 * stop)) raise_unencodable(objs[stop]);
        i = stop + 1;
    }
    return out;
}

py::array l2_normalize_py(py::handle x_obj, py::handle out_obj) {
    py::array x = checked_f32(x_obj, "x", 2, 2);
    const size_t n = static_cast<size_t>(x.shape(0)), d = static_cast<size_t>(x.shape(1));
    py::array out;
    if (out_obj.is_none()) {
        out = py::array_t<float>({x.shape(0), x.shape(1)});
    } else {
        out = checked_f32(out_obj, "out", 2, 2);
        if (out.shape(0) != x.shape(0) || out.shape(1) != x.shape(1))
            throw py::value_error("out has shape (" + std::to_string(out.shape(0)) + ", " +
                                  std::to_string(out.shape(1)) + "), x has (" + std::to_string(n) + ", " +
                                  std::to_string(d) + "); pass out of x's shape, or out=None");
        if (!out.writeable()) throw py::value_error("out is read-only; pass a writeable array");
    }
    const float* src = static_cast<const float*>(x.data());
    float* dst = static_cast<float*>(out.mutable_data());
    if (src != dst) {
        // Partial overlap would read rows already written: refuse rather than guess.
        const char* a0 = reinterpret_cast<const char*>(src);
        const char* b0 = reinterpret_cast<const char*>(dst);
        const size_t bytes = n * d * sizeof(float);
        if (a0 < b0 + bytes && b0 < a0 + bytes)
            throw py::value_error("out overlaps x without being x; pass out=x or a separate array");
    }
    if (n == 0 || d == 0) return out;
    {
        py::gil_scoped_release nogil;
        l2_normalize(src, dst, n, d);
    }
    return out;
}

Metric parse_metric(const std::string& m) {
    if (m == "cosine") return Metric::cosine;
    if (m == "dot") return Metric::dot;
    if (m == "l2") return Metric::l2;
    throw py::value_error("metric '" + m + "' is unknown; use one of 'cosine', 'dot', 'l2'");
}

py::tuple topk_py(py::handle q_obj, py::handle b_obj, py::int_ k_obj, const std::string& metric_s,
                  py::handle ids_obj) {
    const Metric metric = parse_metric(metric_s);
    py::array q = checked_f32(q_obj, "queries", 1, 2);
    py::array b = checked_f32(b_obj, "base", 2, 2);
    const long long k = k_obj.cast<long long>();
    if (k <= 0) throw py::value_error("k must be >= 1, got " + std::to_string(k));
    const bool single = q.ndim() == 1;
    const size_t nq = single ? 1 : static_cast<size_t>(q.shape(0));
    const size_t dq = static_cast<size_t>(single ? q.shape(0) : q.shape(1));
    const size_t nb = static_cast<size_t>(b.shape(0)), d = static_cast<size_t>(b.shape(1));
    if (dq != d)
        throw py::value_error("queries have dimension " + std::to_string(dq) + " but base has " +
                              std::to_string(d) + "; both must have the same number of columns");
    if (d == 0) throw py::value_error("vectors must have at least one dimension (d >= 1)");
    const int64_t* ids = nullptr;
    size_t nids = 0;
    py::array ids_arr;
    if (!ids_obj.is_none()) {
        if (!py::isinstance<py::array>(ids_obj))
            throw py::type_error("ids must be a numpy int64 array; pass np.asarray(ids, dtype=np.int64)");
        ids_arr = py::reinterpret_borrow<py::array>(ids_obj);
        if (!ids_arr.dtype().is(py::dtype::of<int64_t>()))
            throw py::type_error("ids has dtype " + std::string(py::str(ids_arr.dtype())) +
                                 ", expected int64; pass np.asarray(ids, dtype=np.int64)");
        if (ids_arr.ndim() != 1) throw py::value_error("ids must be 1-D");
        if (!(ids_arr.flags() & py::array::c_style))
            throw py::type_error("ids is not contiguous; pass np.ascontiguousarray(ids, dtype=np.int64)");
        ids = static_cast<const int64_t*>(ids_arr.data());
        nids = static_cast<size_t>(ids_arr.shape(0));
    }
    const size_t searched = ids ? nids : nb;
    const size_t kk = std::min(static_cast<size_t>(k), searched);
    py::array_t<int64_t> idx = single ? py::array_t<int64_t>({static_cast<py::ssize_t>(kk)})
                                      : py::array_t<int64_t>({static_cast<py::ssize_t>(nq), static_cast<py::ssize_t>(kk)});
    py::array_t<float> sc = single ? py::array_t<float>({static_cast<py::ssize_t>(kk)})
                                   : py::array_t<float>({static_cast<py::ssize_t>(nq), static_cast<py::ssize_t>(kk)});
    if (nq > 0 && kk > 0) {
        const float* Q = static_cast<const float*>(q.data());
        const float* B = static_cast<const float*>(b.data());
        int64_t* pi = idx.mutable_data();
        float* ps = sc.mutable_data();
        py::gil_scoped_release nogil;
        topk(Q, nq, B, nb, d, ids, nids, kk, metric, pi, ps);
    }
    return py::make_tuple(idx, sc);
}

py::tuple topk_i8_py(py::handle q_obj, py::handle b_obj, py::int_ k_obj) {
    py::array q = checked_f32(q_obj, "query", 1, 1);
    if (!py::isinstance<py::array>(b_obj))
        throw py::type_error("base must be a numpy int8 array; pass np.ascontiguousarray(base, dtype=np.int8)");
    py::array b = py::reinterpret_borrow<py::array>(b_obj);
    if (!b.dtype().is(py::dtype::of<int8_t>()))
        throw py::type_error("base has dtype " + std::string(py::str(b.dtype())) +
                             ", expected int8; quantise it first (magray.kernels.quantize_i8)");
    if (b.ndim() != 2) throw py::value_error("base must be 2-D (rows, d), got " + std::to_string(b.ndim()) + "-D");
    if (!(b.flags() & py::array::c_style))
        throw py::type_error("base is not C-contiguous; pass np.ascontiguousarray(base, dtype=np.int8)");
    const long long k = k_obj.cast<long long>();
    if (k <= 0) throw py::value_error("k must be >= 1, got " + std::to_string(k));
    const size_t nb = static_cast<size_t>(b.shape(0)), d = static_cast<size_t>(b.shape(1));
    if (static_cast<size_t>(q.shape(0)) != d)
        throw py::value_error("query has dimension " + std::to_string(q.shape(0)) + " but base has " +
                              std::to_string(d) + "; both must have the same number of columns");
    if (d == 0) throw py::value_error("vectors must have at least one dimension (d >= 1)");
    const size_t kk = std::min(static_cast<size_t>(k), nb);
    py::array_t<int64_t> idx({static_cast<py::ssize_t>(kk)});
    py::array_t<float> dots({static_cast<py::ssize_t>(kk)});
    double scale = 0.0;
    if (kk > 0) {
        const float* Q = static_cast<const float*>(q.data());
        const int8_t* B = static_cast<const int8_t*>(b.data());
        int64_t* pi = idx.mutable_data();
        float* pd = dots.mutable_data();
        py::gil_scoped_release nogil;
        scale = topk_i8(Q, B, nb, d, kk, pi, pd);
    }
    return py::make_tuple(idx, dots, scale);
}

double i8_query_scale_py(py::handle q_obj) {
    py::array q = checked_f32(q_obj, "query", 1, 1);
    const float* Q = static_cast<const float*>(q.data());
    return i8_query_scale(Q, static_cast<size_t>(q.shape(0)));
}

py::array mean_pool_py(py::handle h_obj, py::handle m_obj, bool normalize) {
    py::array h = checked_f32(h_obj, "hidden", 3, 3);
    if (!py::isinstance<py::array>(m_obj))
        throw py::type_error("mask must be a numpy int64 or int32 array; pass np.asarray(mask, dtype=np.int64)");
    py::array m = py::reinterpret_borrow<py::array>(m_obj);
    const bool is64 = m.dtype().is(py::dtype::of<int64_t>());
    const bool is32 = m.dtype().is(py::dtype::of<int32_t>());
    if (!is64 && !is32)
        throw py::type_error("mask has dtype " + std::string(py::str(m.dtype())) +
                             ", expected int64 or int32; pass np.asarray(mask, dtype=np.int64)");
    if (!(m.flags() & py::array::c_style))
        throw py::type_error("mask is not C-contiguous; pass np.ascontiguousarray(mask)");
    const size_t B = static_cast<size_t>(h.shape(0)), S = static_cast<size_t>(h.shape(1)),
                 D = static_cast<size_t>(h.shape(2));
    if (m.ndim() != 2 || static_cast<size_t>(m.shape(0)) != B || static_cast<size_t>(m.shape(1)) != S)
        throw py::value_error("mask must have shape (batch, seq) = (" + std::to_string(B) + ", " +
                              std::to_string(S) + ") to match hidden");
    py::array_t<float> out({static_cast<py::ssize_t>(B), static_cast<py::ssize_t>(D)});
    if (B == 0 || D == 0) return std::move(out);
    const float* hp = static_cast<const float*>(h.data());
    const void* mp = m.data();
    float* op = out.mutable_data();
    {
        py::gil_scoped_release nogil;
        mean_pool(hp, mp, is64, B, S, D, normalize, op);
    }
    return std::move(out);
}

// The 26-character Crockford base32 form of a 16-byte id (as ULID: 130 bits, the first
// two zero), on every search hit; magray.memory.ids.decode is its inverse.
py::str ulid_encode(const py::bytes& raw) {
    char* data = nullptr;
    Py_ssize_t len = 0;
    if (PyBytes_AsStringAndSize(raw.ptr(), &data, &len) != 0) throw py::error_already_set();
    if (len != 16) throw py::value_error("an id is 16 bytes, got " + std::to_string(len));
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    uint64_t hi = 0, lo = 0;
    for (int i = 0; i < 8; ++i) hi = (hi << 8) | static_cast<unsigned char>(data[i]);
    for (int i = 8; i < 16; ++i) lo = (lo << 8) | static_cast<unsigned char>(data[i]);
    char out[26];
    for (int i = 0; i < 26; ++i) {
        const int shift = 125 - 5 * i;  // the lowest bit of character i
        uint64_t v;
        if (shift >= 64) v = hi >> (shift - 64);
        else if (shift == 0) v = lo;
        else v = (lo >> shift) | (hi << (64 - shift));
        out[i] = alphabet[v & 31];
    }
    return py::reinterpret_steal<py::str>(PyUnicode_FromStringAndSize(out, 26));
}

Isa parse_isa(const std::string& name) {
    if (name == "scalar") return Isa::scalar;
    if (name == "avx2") return Isa::avx2;
    if (name == "avx512") return Isa::avx512;
    throw py::value_error("unknown instruction set '" + name + "'; use scalar, avx2 or avx512");
}

py::dict cpu_info() {
    py::dict d;
    py::list available;
    available.append("scalar");
    if (cpu_features().avx2) available.append("avx2");
    if (cpu_features().avx512) available.append("avx512");
    d["isa"] = isa_name(active_isa());
    d["best"] = isa_name(best_isa());
    d["forced"] = isa_forced();
    d["available"] = available;
    return d;
}

}  // namespace

PYBIND11_MODULE(_native, m) {
    m.doc() = "magray's native kernels (private: use magray.kernels)";
    m.attr("__version__") = MAGRAY_VERSION;
    try {
        (void)active_kernels();  // reads MAGRAY_FORCE_ISA now, so a bad value fails the import
    } catch (const std::invalid_argument& e) {
        throw py::import_error(e.what());
    }
    m.def("hash128", &hash128, py::arg("data"), py::arg("seed") = 0);
    m.def("hash128_many", &hash128_many, py::arg("items"), py::arg("seed") = 0);
    m.def("l2_normalize", &l2_normalize_py, py::arg("x"), py::arg("out") = py::none());
    m.def("topk", &topk_py, py::arg("queries"), py::arg("base"), py::arg("k"), py::arg("metric") = "cosine",
          py::arg("ids") = py::none());
    m.def("i8_query_scale", &i8_query_scale_py, py::arg("query"));
    m.def("topk_i8", &topk_i8_py, py::arg("query"), py::arg("base"), py::arg("k"));
    m.def("mean_pool", &mean_pool_py, py::arg("hidden"), py::arg("mask"), py::arg("normalize") = true);
    m.def("cpu_info", &cpu_info);
    m.def("ulid_encode", &ulid_encode, py::arg("raw"));
    m.def("_set_isa", [](const std::string& name) { set_active_isa(parse_isa(name)); }, py::arg("name"),
          "Switch the active instruction set (for tests and benchmarks); not thread-safe with running calls' choice.");
}
