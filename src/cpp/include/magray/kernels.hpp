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
    // out[j] = |q - B[j]|^2 for j < nb.
    void (*l2_rows)(const float* q, const float* B, size_t nb, size_t d, float* out);
    // out[j] = |B[j]|^2 for j < nb.
    void (*sqnorm_rows)(const float* B, size_t nb, size_t d, float* out);

    // Packed-panel products, the GEMM-like path for many queries. Both operands are packed
    // k-major and zero-padded: a base panel holds panel_rows rows, P[k * panel_rows + r] = B[r][k];
    // a query panel holds panel_queries rows, Qp[k * panel_queries + i] = Q[i][k].
    // The kernel writes the first nq (<= panel_queries) rows of the block:
    //   dot: out[i * ldo + r] = <Q[i], B[r]>     l2: out[i * ldo + r] = |Q[i] - B[r]|^2
    size_t panel_rows;
    size_t panel_queries;
    void (*dot_panel)(const float* Qp, size_t nq, const float* P, size_t d, float* out, size_t ldo);
    void (*l2_panel)(const float* Qp, size_t nq, const float* P, size_t d, float* out, size_t ldo);

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
