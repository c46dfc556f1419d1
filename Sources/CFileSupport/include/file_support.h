#ifndef DOCONV_FILE_SUPPORT_H
#define DOCONV_FILE_SUPPORT_H

/// Starts writing `length` bytes of `fd` from `offset` to the disk, without waiting
/// (Linux sync_file_range with SYNC_FILE_RANGE_WRITE, which Swift's Glibc module does not
/// import). Advisory: returns -1 where unsupported, and nothing depends on it succeeding.
int doconv_start_writeback(int fd, long long offset, long long length);

#endif
