// CPU feature detection, which Swift cannot do itself (it has no cpuid): the fold kernels
// built for AVX2 + FMA are only called where this says they can run.
#include "cpu_support.h"

int doconv_cpu_has_avx2_fma(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    // __builtin_cpu_supports checks the OS saves the YMM registers (XGETBV) for AVX features.
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

int doconv_cpu_has_avx512(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    // __builtin_cpu_supports checks XGETBV too: the OS must save opmask and ZMM state.
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}
