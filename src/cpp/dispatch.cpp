// CPU features are detected once; the active kernel table is an atomic pointer so that
// tests can switch instruction sets (MAGRAY_FORCE_ISA at start-up, _set_isa afterwards).
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "magray/cpu.hpp"
#include "magray/kernels.hpp"

#if defined(MAGRAY_X86)
#include <cpuid.h>
#endif

namespace magray {
namespace {

CpuFeatures detect() {
    CpuFeatures f;
#if defined(MAGRAY_X86)
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
    const bool osxsave = (ecx >> 27) & 1;
    const bool fma = (ecx >> 12) & 1;
    const bool avx = (ecx >> 28) & 1;
    if (!osxsave || !avx) return f;
    unsigned xcr0_lo = 0, xcr0_hi = 0;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    const bool ymm_state = (xcr0_lo & 0x6) == 0x6;           // SSE + AVX state
    const bool zmm_state = (xcr0_lo & 0xE6) == 0xE6;         // + opmask, ZMM_Hi256, Hi16_ZMM
    if (__get_cpuid_max(0, nullptr) < 7) return f;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    const bool avx2 = (ebx >> 5) & 1;
    const bool avx512f = (ebx >> 16) & 1;
    const bool avx512dq = (ebx >> 17) & 1;
    const bool avx512bw = (ebx >> 30) & 1;
    const bool avx512vl = (ebx >> 31) & 1;
    f.avx2 = ymm_state && avx2 && fma;
    f.avx512 = f.avx2 && zmm_state && avx512f && avx512dq && avx512bw && avx512vl;
    f.avx512vbmi2 = f.avx512 && ((ecx >> 6) & 1);
#endif
    return f;
}

bool supported(Isa isa) {
    switch (isa) {
        case Isa::scalar: return true;
        case Isa::avx2: return cpu_features().avx2;
        case Isa::avx512: return cpu_features().avx512;
    }
    return false;
}

struct Active {
    std::atomic<const VecKernels*> table{nullptr};
    bool forced = false;
    Active() {
        Isa isa = best_isa();
        const char* env = std::getenv("MAGRAY_FORCE_ISA");
        if (env != nullptr && env[0] != '\0') {
            std::string v(env);
            if (v == "scalar") isa = Isa::scalar;
            else if (v == "avx2") isa = Isa::avx2;
            else if (v == "avx512") isa = Isa::avx512;
            else
                throw std::invalid_argument("MAGRAY_FORCE_ISA=" + v +
                                            " is not one of scalar, avx2, avx512; unset it or pick one");
            if (!supported(isa))
                throw std::invalid_argument("MAGRAY_FORCE_ISA=" + v +
                                            " but this CPU does not support it; unset it or pick a lower ISA");
            forced = true;
        }
        table.store(&kernels_for(isa));
    }
};

Active& active() {
    static Active a;
    return a;
}

}  // namespace

const CpuFeatures& cpu_features() {
    static const CpuFeatures f = detect();
    return f;
}

Isa best_isa() {
    const CpuFeatures& f = cpu_features();
    if (f.avx512) return Isa::avx512;
    if (f.avx2) return Isa::avx2;
    return Isa::scalar;
}

const char* isa_name(Isa isa) {
    switch (isa) {
        case Isa::scalar: return "scalar";
        case Isa::avx2: return "avx2";
        case Isa::avx512: return "avx512";
    }
    return "unknown";
}

const VecKernels& kernels_for(Isa isa) {
    if (!supported(isa))
        throw std::invalid_argument(std::string("instruction set ") + isa_name(isa) +
                                    " is not supported by this CPU");
#if defined(MAGRAY_X86)
    if (isa == Isa::avx512) return vec_kernels_avx512();
    if (isa == Isa::avx2) return vec_kernels_avx2();
#endif
    return vec_kernels_scalar();
}

const VecKernels& active_kernels() { return *active().table.load(std::memory_order_acquire); }

void set_active_isa(Isa isa) { active().table.store(&kernels_for(isa), std::memory_order_release); }

Isa active_isa() { return active_kernels().isa; }

bool isa_forced() { return active().forced; }

double careful_norm(const float* x, size_t d) {
    double amax = 0.0;
    for (size_t j = 0; j < d; ++j) {
        const double v = std::fabs(static_cast<double>(x[j]));
        if (!std::isfinite(v)) return -1.0;
        if (v > amax) amax = v;
    }
    if (amax == 0.0) return 0.0;
    double s = 0.0;
    for (size_t j = 0; j < d; ++j) {
        const double v = static_cast<double>(x[j]) / amax;
        s += v * v;
    }
    return amax * std::sqrt(s);
}

}  // namespace magray
