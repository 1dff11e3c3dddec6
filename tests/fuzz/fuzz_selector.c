/* Fuzz target: `ei prepare` JSON field selectors (data/prepare_json.c): the selector grammar (paths,
 * indexes, one "[]", formats with {field}, paths built from other fields' values) and their
 * evaluation on a JSON value. Input: the selector on the first line, the JSON document after it. */
#include "fuzz.h"

#include "data/prepare.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nl = memchr(data, '\n', size);
    size_t sl = nl ? (size_t)(nl - data) : size;
    char *sel_text = malloc(sl + 1);
    if (!sel_text) return 0;
    memcpy(sel_text, data, sl);
    sel_text[sl] = '\0';
    ei_selector *sel = ei_selector_parse(sel_text, "context");
    fz_note("selector", sel != NULL);
    if (sel) {
        if (strcmp(ei_selector_text(sel), sel_text) != 0) fz_fail("selector text changed");
        const char *json = nl ? (const char *)nl + 1 : "";
        size_t jl = nl ? size - sl - 1 : 0;
        cJSON *root = cJSON_ParseWithLength(json, jl);
        if (root) {
            char **v = NULL;
            size_t n = 0;
            if (ei_selector_eval(sel, root, &v, &n) == 0) {
                if (!ei_selector_is_array(sel) && n != 1) fz_fail("a plain selector gave %zu values", n);
                for (size_t i = 0; i < n; i++)
                    if (!v[i]) fz_fail("value %zu is NULL", i);
                    else fz_touch(v[i], strlen(v[i]) + 1);
                ei_strings_free(v, n);
            } else if (v || n) {
                fz_fail("a failed evaluation left values behind");
            }
            cJSON_Delete(root);
        }
        ei_selector_free(sel);
    }
    free(sel_text);
    return 0;
}
