// Scalar reference kernels: the definition every SIMD kernel is tested against.
// Plain loops in float32, no reassociation (the build has no -ffast-math).
#include <cfloat>
#include <cmath>

#include "magray/kernels.hpp"

namespace magray {
namespace {

constexpr size_t kQueryBlock = 8;

// The reference one-query path: the same keys and bits as the SIMD kernels (see
// kernels.hpp), from plain float32 loops.
uint64_t one_query_keys(const float* q, const float* B, size_t nb, size_t d, Metric metric, float qs,
                        float thr, float* keys, uint64_t* masks) {
    uint64_t any = 0;
    for (size_t j = 0; j < nb; ++j) {
        const float* b = B + j * d;
        float s = 0.0f, sq = 0.0f;
        for (size_t k = 0; k < d; ++k) {
            if (metric == Metric::l2) {
                const float t = q[k] - b[k];
                s += t * t;
            } else {
                s += q[k] * b[k];
                sq += b[k] * b[k];
            }
        }
        float key = s;
        if (metric == Metric::l2) {
            key = -s;
        } else if (metric == Metric::cosine) {
            const bool ok = sq >= kNormalSquares && sq <= FLT_MAX;
            key = ok ? s * qs * (1.0f / std::sqrt(sq)) : NAN;
        }
        keys[j] = key;
        const uint64_t bit = static_cast<uint64_t>(!(key < thr) || !(std::fabs(key) <= FLT_MAX));
        if (j % 64 == 0) masks[j / 64] = 0;
        masks[j / 64] |= bit << (j % 64);
        any |= bit;
    }
    return any;
}

void sqnorm_rows(const float* B, size_t nb, size_t d, float* out) {
    for (size_t j = 0; j < nb; ++j) {
        const float* b = B + j * d;
        float s = 0.0f;
        for (size_t k = 0; k < d; ++k) s += b[k] * b[k];
        out[j] = s;
    }
}

uint64_t block_keys(const float* Qp, const float* B, size_t nb, size_t d, const float* bscale,
                    bool l2, const float* thr, float* keys, uint64_t* masks) {
    uint64_t any = 0;
    for (size_t r = 0; r < nb; ++r) {
        const float* b = B + r * d;
        float acc[kQueryBlock] = {};
        for (size_t k = 0; k < d; ++k) {
            const float* q = Qp + k * kQueryBlock;
            for (size_t i = 0; i < kQueryBlock; ++i) {
                if (l2) {
                    const float t = q[i] - b[k];
                    acc[i] += t * t;
                } else {
                    acc[i] += q[i] * b[k];
                }
            }
        }
        uint64_t m = 0;
        for (size_t i = 0; i < kQueryBlock; ++i) {
            float key = l2 ? -acc[i] : (bscale ? acc[i] * bscale[r] : acc[i]);
            keys[r * kQueryBlock + i] = key;
            if (!(key < thr[i]) || !(std::fabs(key) <= FLT_MAX)) m |= uint64_t{1} << i;
        }
        masks[r] = m;
        any |= m;
    }
    return any;
}

void scale(const float* x, float* out, size_t d, float s) {
    for (size_t k = 0; k < d; ++k) out[k] = x[k] * s;
}

size_t normalize_rows(const float* x, float* out, size_t n, size_t d) {
    for (size_t i = 0; i < n; ++i) {
        const float* r = x + i * d;
        float sq = 0.0f;
        for (size_t k = 0; k < d; ++k) sq += r[k] * r[k];
        if (!(sq >= kNormalSquares && sq <= FLT_MAX)) return i;
        if (out != nullptr) scale(r, out + i * d, d, static_cast<float>(1.0 / std::sqrt(static_cast<double>(sq))));
    }
    return n;
}

void axpy(float* acc, const float* x, size_t d, float w) {
    for (size_t k = 0; k < d; ++k) acc[k] += w * x[k];
}

void dot_i8_rows(const int8_t* B, size_t nb, size_t d, const int16_t* q, int32_t* out) {
    for (size_t i = 0; i < nb; ++i) {
        const int8_t* r = B + i * d;
        int32_t s = 0;
        for (size_t k = 0; k < d; ++k) s += static_cast<int32_t>(r[k]) * static_cast<int32_t>(q[k]);
        out[i] = s;
    }
}

const VecKernels kTable = {
    Isa::scalar, one_query_keys, sqnorm_rows, kQueryBlock, block_keys, normalize_rows, scale,
    axpy, dot_i8_rows,
};

}  // namespace

const VecKernels& vec_kernels_scalar() { return kTable; }

}  // namespace magray
