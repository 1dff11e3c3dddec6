/* The YAML config fuzz targets (fuzz_yaml_train.c, fuzz_yaml_scenario.c) take the file and a list of
 * `--set` overrides from one input: the YAML text up to the first NUL byte, then one override per
 * line. Loading runs inside the scratch folder, so relative `include:` paths name files there (the
 * input itself is config.yaml: an include of it is a cycle the depth limit must stop); the working
 * directory is restored after each input, for libFuzzer's own files and the replay's paths. */
#ifndef EI_FUZZ_YAML_COMMON_H
#define EI_FUZZ_YAML_COMMON_H

#include "fuzz.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FZ_MAX_SETS 8

typedef struct {
    char path[512];
    char *sets_buf;
    const char *sets[FZ_MAX_SETS];
    int n_sets;
} fz_yaml_input;

static int fz_yaml_cwd = -1;

static inline void fz_yaml_enter_scratch(void) {
    if (fz_yaml_cwd < 0) fz_yaml_cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fz_yaml_cwd < 0 || chdir(fz_dir()) != 0) abort();
}

static inline void fz_yaml_leave_scratch(void) {
    if (fchdir(fz_yaml_cwd) != 0) abort();
}

static inline void fz_yaml_split(fz_yaml_input *in, const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t yl = nul ? (size_t)(nul - data) : size;
    fz_write(in->path, sizeof in->path, "config.yaml", data, yl);
    in->n_sets = 0;
    in->sets_buf = NULL;
    if (!nul) return;
    size_t sl = size - yl - 1;
    in->sets_buf = malloc(sl + 1);
    if (!in->sets_buf) return;
    memcpy(in->sets_buf, nul + 1, sl);
    in->sets_buf[sl] = '\0';
    for (char *s = in->sets_buf; *s && in->n_sets < FZ_MAX_SETS;) {
        char *nl = strchr(s, '\n');
        if (nl) *nl = '\0';
        in->sets[in->n_sets++] = s;
        if (!nl) break;
        s = nl + 1;
    }
}

#endif
