// The per-ISA table of float32 vector kernels. Each instruction set fills one table
// (vec_scalar.cpp, vec_avx2.cpp, vec_avx512.cpp); dispatch.cpp picks one at run time.
//
// Conventions: rows are contiguous with stride d; sizes are never zero unless stated;
// no kernel allocates, throws or starts threads.
#pragma once

#include <cstddef>
#include <cstdint>

#include "magray/cpu.hpp"
#include "magray/ops.hpp"

namespace magray {

// A float32 sum of squares at least this large (and finite) is exact enough to take a
// square root of; smaller ones may have lost precision to underflow.
constexpr float kNormalSquares = 1e-30f;

struct VecKernels {
    Isa isa;

    // The one-query path, over nb rows (row-major, stride d):
    //   metric dot:    key = <q, B_j>
    //   metric cosine: key = <q, B_j> * qs * (1 / sqrt(|B_j|^2)), or NaN when |B_j|^2 is not
    //                  a normal positive float (zero, underflow, overflow, NaN/Inf), for the
    //                  caller's careful path
    //   metric l2:     key = -|q - B_j|^2
    // keys[j] = key, and bit j % 64 of masks[j / 64] is set when the key could enter the
    // top-k (!(key < thr)) or is not finite. Returns the OR of all mask words.
    uint64_t (*one_query_keys)(const float* q, const float* B, size_t nb, size_t d, Metric metric,
                               float qs, float thr, float* keys, uint64_t* masks);
    // out[j] = |B[j]|^2 for j < nb.
    void (*sqnorm_rows)(const float* B, size_t nb, size_t d, float* out);

    // The many-query path, shaped like a matrix product with the top-k filter fused in.
    // Queries come packed k-major in blocks of query_block lanes, Qp[k * query_block + i]
    // (zero-padded). For every base row r < nb (row-major, stride d) and lane i:
    //   key = <Q_i, B_r> * (bscale ? bscale[r] : 1)     (l2 == false)
    //   key = -|Q_i - B_r|^2                             (l2 == true)
    // keys[r * query_block + i] = key, and bit i of masks[r] is set when key could enter
    // lane i's top-k (!(key < thr[i])) or is not finite, so the caller only visits those.
    // Returns the OR of all masks.
    size_t query_block;
    uint64_t (*block_keys)(const float* Qp, const float* B, size_t nb, size_t d,
                           const float* bscale, bool l2, const float* thr, float* keys,
                           uint64_t* masks);

    // Row-wise L2 normalisation, one pass per row while it sits in L1: the float32 sum of
    // squares, then out = x / |x| (scaled by the float32 of 1/sqrt in double). Stops at the
    // first row whose sum of squares is not a normal positive float (zero, underflow,
    // overflow, NaN or Inf) and returns its index, leaving that row to the caller's careful
    // path; returns n when every row is done. out == nullptr only checks the rows; out == x
    // normalises in place.
    size_t (*normalize_rows)(const float* x, float* out, size_t n, size_t d);
    // out[j] = x[j] * s (out may alias x).
    void (*scale)(const float* x, float* out, size_t d, float s);
    // acc[j] += w * x[j].
    void (*axpy)(float* acc, const float* x, size_t d, float w);

    // The int8 scan: out[j] = sum_k B[j * d + k] * q[k], exactly, in int32, for j < nb.
    // The caller bounds |q[k]| so that d * 127 * max|q| fits an int32.
    void (*dot_i8_rows)(const int8_t* B, size_t nb, size_t d, const int16_t* q, int32_t* out);
};

const VecKernels& vec_kernels_scalar();
#if defined(MAGRAY_X86)
const VecKernels& vec_kernels_avx2();
const VecKernels& vec_kernels_avx512();
// The one-query scan of both x86 tables (vec_avx2.cpp): bound by memory, it is faster
// with 256-bit vectors than with 512-bit ones on the machines measured.
uint64_t one_query_keys_256(const float* q, const float* B, size_t nb, size_t d, Metric metric,
                            float qs, float thr, float* keys, uint64_t* masks);
// The int8 scan of both x86 tables (vec_avx2.cpp): widening to int16 and multiply-add.
void dot_i8_rows_256(const int8_t* B, size_t nb, size_t d, const int16_t* q, int32_t* out);
#endif

// The active table: best_isa() unless MAGRAY_FORCE_ISA names another (read once).
const VecKernels& active_kernels();
// The table for one ISA; throws std::invalid_argument if this machine lacks it.
const VecKernels& kernels_for(Isa isa);
// The ISA chosen at start-up and whether MAGRAY_FORCE_ISA chose it.
Isa active_isa();
bool isa_forced();

// Careful row norm, used when the fast float32 sum of squares overflowed or underflowed:
// returns the L2 norm computed with scaling in double, or -1 if the row holds NaN or Inf.
double careful_norm(const float* x, size_t d);

}  // namespace magray

namespace magray {
// Switch the active table (tests and benchmarks); throws if the CPU lacks the ISA.
void set_active_isa(Isa isa);
}  // namespace magray
