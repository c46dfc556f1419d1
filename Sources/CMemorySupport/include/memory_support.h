#ifndef DOCONV_MEMORY_SUPPORT_H
#define DOCONV_MEMORY_SUPPORT_H

/// Makes glibc's malloc keep freed memory in the process, however large the block: no block
/// is mapped on its own (M_MMAP_THRESHOLD) and the heap is not trimmed (M_TRIM_THRESHOLD),
/// both raised to their largest value (mallopt, which Swift's Glibc module does not import).
/// Returns 1 when both took, 0 otherwise (other C libraries: nothing is changed).
int doconv_keep_freed_memory(void);

#endif
