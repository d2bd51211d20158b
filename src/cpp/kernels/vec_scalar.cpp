// Scalar reference kernels: the definition every SIMD kernel is tested against.
// Plain loops in float32, no reassociation (the build has no -ffast-math).
#include "magray/kernels.hpp"

namespace magray {
namespace {

constexpr size_t kPanelRows = 8;
constexpr size_t kPanelQueries = 4;

void dot_rows(const float* q, const float* B, size_t nb, size_t d, float* out) {
    for (size_t j = 0; j < nb; ++j) {
        const float* b = B + j * d;
        float s = 0.0f;
        for (size_t k = 0; k < d; ++k) s += q[k] * b[k];
        out[j] = s;
    }
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

void dot_panel(const float* Qp, size_t nq, const float* P, size_t d, float* out, size_t ldo) {
    for (size_t i = 0; i < nq; ++i) {
        float acc[kPanelRows] = {};
        for (size_t k = 0; k < d; ++k) {
            const float* p = P + k * kPanelRows;
            const float qk = Qp[k * kPanelQueries + i];
            for (size_t r = 0; r < kPanelRows; ++r) acc[r] += qk * p[r];
        }
        for (size_t r = 0; r < kPanelRows; ++r) out[i * ldo + r] = acc[r];
    }
}

void l2_panel(const float* Qp, size_t nq, const float* P, size_t d, float* out, size_t ldo) {
    for (size_t i = 0; i < nq; ++i) {
        float acc[kPanelRows] = {};
        for (size_t k = 0; k < d; ++k) {
            const float* p = P + k * kPanelRows;
            const float qk = Qp[k * kPanelQueries + i];
            for (size_t r = 0; r < kPanelRows; ++r) {
                const float t = qk - p[r];
                acc[r] += t * t;
            }
        }
        for (size_t r = 0; r < kPanelRows; ++r) out[i * ldo + r] = acc[r];
    }
}

void scale(const float* x, float* out, size_t d, float s) {
    for (size_t k = 0; k < d; ++k) out[k] = x[k] * s;
}

void axpy(float* acc, const float* x, size_t d, float w) {
    for (size_t k = 0; k < d; ++k) acc[k] += w * x[k];
}

const VecKernels kTable = {
    Isa::scalar, dot_rows, l2_rows, sqnorm_rows, kPanelRows, kPanelQueries,
    dot_panel,   l2_panel, scale,   axpy,
};

}  // namespace

const VecKernels& vec_kernels_scalar() { return kTable; }

}  // namespace magray
