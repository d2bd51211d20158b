// <immintrin.h> for the AVX-512 kernel files. Some GCC 12 releases warn spuriously about the
// uninitialized placeholder operand inside the AVX-512 intrinsic headers (GCC bug 105593);
// the warning is located in the header itself, so it is silenced around the include only.
#pragma once

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
