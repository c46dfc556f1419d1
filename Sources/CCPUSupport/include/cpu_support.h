#ifndef DOCONV_CPU_SUPPORT_H
#define DOCONV_CPU_SUPPORT_H

// What Swift cannot ask of the CPU itself: which instruction sets it has (cpuid) and
// prefetch hints. The hints are static inline so they compile into the Swift kernels that
// call them, one instruction each; a prefetch never faults, whatever the address.

/// 1 when the CPU and the operating system support AVX2 and FMA (x86-64 only), else 0.
int doconv_cpu_has_avx2_fma(void);

/// 1 when the CPU has AVX-512 F, DQ, BW and VL (x86-64-v4) and the operating system saves
/// the ZMM and mask registers, else 0.
int doconv_cpu_has_avx512(void);

/// Asks for the cache line holding `address`, to be read soon.
static inline void doconv_prefetch_read(const void *address) { __builtin_prefetch(address, 0, 3); }

/// Asks for the cache line holding `address`, to be written soon (owned, so the store
/// does not wait for it).
static inline void doconv_prefetch_write(const void *address) { __builtin_prefetch(address, 1, 3); }

#endif
