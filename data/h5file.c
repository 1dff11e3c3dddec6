#include "data/h5file.h"

#include "core/ei_error.h"
#include "core/ei_seal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static atomic_int broken;

static void terminate_library(void) {
    if (!atomic_load(&broken)) H5close();
}

static void init_library(void) {
    /* Fails (and changes nothing) when the library is already initialised: its handler stays. */
    if (H5dont_atexit() >= 0) atexit(terminate_library);
}

void ei_h5_init(void) { pthread_once(&init_once, init_library); }

void ei_h5_mark_broken(void) { atomic_store(&broken, 1); }

hid_t ei_h5_sealed_fcpl(void) {
    ei_h5_init();
    hid_t p = H5Pcreate(H5P_FILE_CREATE);
    if (p >= 0 && H5Pset_userblock(p, EI_SEAL_BYTES) < 0) {
        H5Pclose(p);
        return -1;
    }
    return p;
}

int ei_h5_check_seal(const char *path, const char *kind, const char *what) {
    int s = ei_seal_check(path, kind);
    if (s < 0) return -1;
    if (s == 0) ei_seal_note_unverified(path, what);
    return 0;
}

int ei_h5_check_stored(hid_t ds, const char *path, const char *name, unsigned long long n, size_t elem) {
    const double stored = (double)H5Dget_storage_size(ds);
    if ((double)n * (double)elem > 1100.0 * stored + 4096.0)
        return ei_error_set("%s: /%s claims %llu elements but the file stores %.0f bytes of it (corrupt file)", path,
                            name, n, stored);
    return 0;
}
