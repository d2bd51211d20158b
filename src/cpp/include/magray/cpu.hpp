// CPU feature detection and the instruction-set switch shared by every kernel family.
#pragma once

#include <cstdint>

namespace magray {

// Ordered: a higher value implies every lower one is available.
enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2 };

struct CpuFeatures {
    bool avx2 = false;     // AVX2 + FMA + OS support for YMM state
    bool avx512 = false;   // AVX-512 F/BW/VL/DQ + OS support for ZMM state
    bool avx512vbmi2 = false;  // avx512 + VBMI2 (byte compress), used by the UTF-8 encoder
};

// Detected once (cpuid + xgetbv); cheap to call repeatedly.
const CpuFeatures& cpu_features();

// Best instruction set this machine supports.
Isa best_isa();

const char* isa_name(Isa isa);

}  // namespace magray
