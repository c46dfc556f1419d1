/*
 * LD_PRELOAD shim for the benches: the process sees a CPU without AVX-512, as on an AVX2
 * machine. onnxruntime (MLAS), numpy and glibc pick their kernels from CPUID, and have no
 * switch to keep to AVX2; verify-equivalence has one (DOCONV_GEMM=avx2), so without this the
 * AVX2 row of bench/verify.sh set doconv's AVX2 build against onnxruntime's AVX-512 kernels.
 *
 * How: Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, CPUs flagged cpuid_fault) makes
 * every CPUID instruction of the process raise SIGSEGV. The handler runs the real CPUID
 * with faulting briefly off, clears the AVX-512 feature bits of leaf 7, and steps over the
 * instruction. The setting is per thread and inherited by threads created later; the
 * constructor runs before any library's own detection.
 *
 * Built and used by bench/verify.sh only; never part of the tools.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static int set_cpuid_faulting(int on) { return (int)syscall(SYS_arch_prctl, ARCH_SET_CPUID, on ? 0 : 1); }

static void emulate_cpuid(int signal, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *regs = uc->uc_mcontext.gregs;
    const uint8_t *ip = (const uint8_t *)regs[REG_RIP];
    if (ip[0] != 0x0f || ip[1] != 0xa2) {
        /* A real fault: let it kill the process as it would have. */
        (void)info;
        struct sigaction fallback = {.sa_handler = SIG_DFL};
        sigaction(signal, &fallback, NULL);
        return;
    }
    unsigned leaf = (unsigned)regs[REG_RAX], subleaf = (unsigned)regs[REG_RCX];
    unsigned a, b, c, d;
    set_cpuid_faulting(0);
    __cpuid_count(leaf, subleaf, a, b, c, d);
    set_cpuid_faulting(1);
    if (leaf == 7 && subleaf == 0) {
        /* EBX: AVX512F 16, DQ 17, IFMA 21, PF 26, ER 27, CD 28, BW 30, VL 31. */
        b &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31));
        /* ECX: VBMI 1, VBMI2 6, VNNI 11, BITALG 12, VPOPCNTDQ 14. */
        c &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
        /* EDX: 4VNNIW 2, 4FMAPS 3, VP2INTERSECT 8, FP16 23. */
        d &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 23));
    } else if (leaf == 7 && subleaf == 1) {
        a &= ~(1u << 5); /* AVX512_BF16 */
    }
    regs[REG_RAX] = a;
    regs[REG_RBX] = b;
    regs[REG_RCX] = c;
    regs[REG_RDX] = d;
    regs[REG_RIP] += 2;
}

__attribute__((constructor)) static void hide_avx512(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = emulate_cpuid;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSEGV, &action, NULL) != 0 || set_cpuid_faulting(1) != 0) {
        fprintf(stderr, "hide_avx512: CPUID faulting is not available here (no cpuid_fault flag)\n");
        exit(3);
    }
}
