// UTF-8 encoding of CPython's compact string storage (latin-1, UCS-2 or UCS-4 code units),
// so a batch of str can be hashed as UTF-8 without creating a bytes object per item.
#pragma once

#include <cstddef>
#include <cstdint>

namespace magray {

// Output buffer size for n code units of the given width (1, 2 or 4 bytes): the largest
// encoding plus 64 bytes, since the vector encoder stores whole 64-byte registers.
inline size_t utf8_max_size(size_t n, int width) { return n * (width == 1 ? 2 : width == 2 ? 3 : 4) + 64; }

// Encodes n code units of the given width into out (at least utf8_max_size bytes). Returns
// the number of bytes written, or SIZE_MAX if a surrogate code point makes the text
// unencodable (as str.encode("utf-8") would refuse it).
size_t utf8_encode(const void* data, size_t n, int width, char* out) noexcept;

#if defined(MAGRAY_X86)
// The same with AVX-512 VBMI2 (byte compress); only for CPUs with cpu_features().avx512vbmi2.
size_t utf8_encode_avx512(const void* data, size_t n, int width, char* out) noexcept;
#endif

}  // namespace magray
