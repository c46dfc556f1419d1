// libhdf5's C API (Debian libhdf5-dev), found through pkg-config.
#include <hdf5.h>
