// libhdf5 exposes its predefined types and property classes as macros over global ids
// that need H5open() first; Swift cannot import them, so these functions return them.
#ifndef DOCONV_HDF5_SHIM_H
#define DOCONV_HDF5_SHIM_H
#include <hdf5.h>

hid_t doconv_h5t_native_float(void);
hid_t doconv_h5t_native_double(void);
hid_t doconv_h5t_c_s1(void);
hid_t doconv_h5p_dataset_create(void);
hid_t doconv_h5p_file_access(void);
unsigned doconv_h5f_acc_rdonly(void);
unsigned doconv_h5f_acc_excl(void);
/// 1 when `name` in `group` is a hard link (not a soft or external link that could lead
/// elsewhere, even into another file), 0 when it is not, negative on failure.
int doconv_h5_is_hard_link(hid_t group, const char *name);
/// Turns off libhdf5's printing of its error stack: errors reach Swift as return codes.
void doconv_h5_silence_errors(void);

#endif
