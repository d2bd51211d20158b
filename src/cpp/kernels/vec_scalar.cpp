// Scalar reference kernels: the definition every SIMD kernel is tested against.
// Plain loops in float32, no reassociation (the build has no -ffast-math).
#include <cfloat>
#include <cmath>

#include "magray/kernels.hpp"

namespace magray {
namespace {

constexpr size_t kQueryBlock = 8;

void sqnorm_rows(const float* B, size_t nb, size_t d, float* out);

void dot_rows(const float* q, const float* B, size_t nb, size_t d, float* out) {
    for (size_t j = 0; j < nb; ++j) {
        const float* b = B + j * d;
        float s = 0.0f;
        for (size_t k = 0; k < d; ++k) s += q[k] * b[k];
        out[j] = s;
    }
}

void dot_norm_rows(const float* q, const float* B, size_t nb, size_t d, float* dots,
                   float* sqnorms) {
    dot_rows(q, B, nb, d, dots);
    sqnorm_rows(B, nb, d, sqnorms);
}

void l2_rows(const float* q, const float* B, size_t nb, size_t d, float* out) {
    for (size_t j = 0; j < nb; ++j) {
        const float* b = B + j * d;
        float s = 0.0f;
        for (size_t k = 0; k < d; ++k) {
            const float t = q[k] - b[k];
            s += t * t;
        }
        out[j] = s;
    }
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

void axpy(float* acc, const float* x, size_t d, float w) {
    for (size_t k = 0; k < d; ++k) acc[k] += w * x[k];
}

const VecKernels kTable = {
    Isa::scalar, dot_rows, dot_norm_rows, l2_rows, sqnorm_rows, kQueryBlock, block_keys, scale, axpy,
};

}  // namespace

const VecKernels& vec_kernels_scalar() { return kTable; }

}  // namespace magray
