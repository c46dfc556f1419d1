#ifndef DOCONV_CPU_FEATURES_H
#define DOCONV_CPU_FEATURES_H

/// 1 when the CPU and the operating system support AVX2 and FMA (x86-64 only), else 0.
int doconv_cpu_has_avx2_fma(void);

#endif
