#include <limits.h>
#include "memory_support.h"
#ifdef __GLIBC__
#include <malloc.h>
#endif

int doconv_keep_freed_memory(void) {
#ifdef __GLIBC__
    return mallopt(M_MMAP_THRESHOLD, INT_MAX) == 1 && mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
#else
    return 0;
#endif
}
