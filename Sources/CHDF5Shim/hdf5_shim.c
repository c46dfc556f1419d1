#include "hdf5_shim.h"

hid_t doconv_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
hid_t doconv_h5t_native_double(void) { return H5T_NATIVE_DOUBLE; }
hid_t doconv_h5t_c_s1(void) { return H5T_C_S1; }
hid_t doconv_h5p_dataset_create(void) { return H5P_DATASET_CREATE; }
hid_t doconv_h5p_file_access(void) { return H5P_FILE_ACCESS; }
unsigned doconv_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
unsigned doconv_h5f_acc_excl(void) { return H5F_ACC_EXCL; }
void doconv_h5_silence_errors(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

int doconv_h5_is_hard_link(hid_t group, const char *name) {
    H5L_info_t info;  /* H5Lget_info is a versioned macro in newer libhdf5: resolved here, in C */
    if (H5Lget_info(group, name, &info, H5P_DEFAULT) < 0) return -1;
    return info.type == H5L_TYPE_HARD ? 1 : 0;
}
