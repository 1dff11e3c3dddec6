/* Fuzz target: edgeinfinite.json of a merged export (formats/gates.c: ei_opts_from_json_file: format,
 * options by name and type, memory_eps, base_model resolved beside the file). Options that load
 * must validate. */
#include "fuzz.h"

#include "core/ei_error.h"
#include "formats/gates.h"
#include "model/options.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    fz_write(path, sizeof path, "edgeinfinite.json", data, size);
    ei_opts o;
    ei_opts_default(&o);
    char *base = NULL;
    int rc = ei_opts_from_json_file(path, &o, &base);
    fz_note("edgeinfinite.json", rc == 0);
    if (rc == 0) {
        if (!base) fz_fail("no base_model after a successful read");
        if (ei_opts_validate(&o, NULL) != 0) fz_fail("options read from the file do not validate: %s", ei_error_get());
    }
    free(base);
    ei_opts_default(&o);
    ei_opts_from_json_file(path, &o, NULL);
    return 0;
}
