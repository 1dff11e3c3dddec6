/* Fuzz target: deployment scenarios (deploy/scenario.c: ei_scenario_load on config/ei_config.c,
 * with the precision plan records of deploy/quant_plan.c and the EdgeInfinite options). Input: see
 * yaml_common.h. A scenario that loads must apply its options to the defaults. */
#include "yaml_common.h"

#include "core/ei_error.h"
#include "deploy/scenario.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_yaml_input in;
    fz_yaml_split(&in, data, size);
    fz_yaml_enter_scratch();
    ei_scenario s;
    int rc = ei_scenario_load(&s, in.path, in.sets, in.n_sets);
    fz_note("scenario", rc == 0);
    if (rc == 0) {
        ei_opts o;
        ei_opts_default(&o);
        if (ei_scenario_apply_opts(&s, &o, 0) != 0)
            fz_fail("a loaded scenario's options do not apply: %s", ei_error_get());
        ei_scenario_weights_name(&s);
        ei_scenario_free(&s);
    }
    free(in.sets_buf);
    fz_yaml_leave_scratch();
    return 0;
}
