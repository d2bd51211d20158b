// The per-ISA table of float32 vector kernels. Each instruction set fills one table
// (vec_scalar.cpp, vec_avx2.cpp, vec_avx512.cpp); dispatch.cpp picks one at run time.
//
// Conventions: rows are contiguous with stride d; sizes are never zero unless stated;
// no kernel allocates, throws or starts threads.
#pragma once

#include <cstddef>
#include <cstdint>

#include "magray/cpu.hpp"

namespace magray {

struct VecKernels {
    Isa isa;

    // out[j] = <q, B[j]> for j < nb.
    void (*dot_rows)(const float* q, const float* B, size_t nb, size_t d, float* out);
    // dots[j] = <q, B[j]> and sqnorms[j] = |B[j]|^2 in one pass over B (cosine, one query).
    void (*dot_norm_rows)(const float* q, const float* B, size_t nb, size_t d, float* dots,
                          float* sqnorms);
    // out[j] = |q - B[j]|^2 for j < nb.
    void (*l2_rows)(const float* q, const float* B, size_t nb, size_t d, float* out);
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

    // out[j] = x[j] * s (out may alias x).
    void (*scale)(const float* x, float* out, size_t d, float s);
    // acc[j] += w * x[j].
    void (*axpy)(float* acc, const float* x, size_t d, float w);
};

const VecKernels& vec_kernels_scalar();
#if defined(MAGRAY_X86)
const VecKernels& vec_kernels_avx2();
const VecKernels& vec_kernels_avx512();
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
