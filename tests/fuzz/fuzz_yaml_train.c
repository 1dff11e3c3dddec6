/* Fuzz target: the training config (train/train_config.c on config/ei_config.c: libyaml documents,
 * anchors and aliases, includes, duplicate keys, every field type, ranges, --set overrides, the
 * required and cross-key checks). Input: see yaml_common.h. A config that loads must dump to YAML
 * that loads back to the same dump (what a checkpoint stores and `--resume` compares). */
#include "yaml_common.h"

#include "core/ei_error.h"
#include "train/train_config.h"

static void roundtrip(const ei_train_config *cfg) {
    char *dump = ei_train_config_dump(cfg);
    if (!dump) return;
    ei_train_config back;
    if (ei_train_config_from_text(&back, dump, "dump") != 0) fz_fail("the dump does not load back: %s", ei_error_get());
    char *again = ei_train_config_dump(&back);
    if (again && strcmp(again, dump) != 0) fz_fail("the dump changes after loading it back");
    if (ei_train_config_check_resume(cfg, &back) != 0) fz_fail("a config cannot resume itself: %s", ei_error_get());
    free(again);
    ei_train_config_free(&back);
    free(dump);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_yaml_input in;
    fz_yaml_split(&in, data, size);
    fz_yaml_enter_scratch();
    const char *files[] = {in.path};
    ei_train_config cfg;
    int rc = ei_train_config_load(&cfg, files, 1, in.sets, in.n_sets);
    fz_note("train config", rc == 0);
    if (rc == 0) {
        roundtrip(&cfg);
        ei_train_config_free(&cfg);
    }
    /* the loader a checkpoint's stored config goes through: no required keys, no overrides */
    char *text = malloc(size + 1);
    if (text) {
        memcpy(text, data, size);
        text[size] = '\0';
        if (ei_train_config_from_text(&cfg, text, "text") == 0) {
            roundtrip(&cfg);
            ei_train_config_free(&cfg);
        }
        free(text);
    }
    free(in.sets_buf);
    fz_yaml_leave_scratch();
    return 0;
}
