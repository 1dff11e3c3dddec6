#include "core/ei_error.h"

#include <stdio.h>
#include <string.h>

#define EI_ERROR_CAP 2048
static _Thread_local char ei_err_buf[EI_ERROR_CAP];

int ei_error_vset(const char *fmt, va_list ap) {
    vsnprintf(ei_err_buf, sizeof ei_err_buf, fmt, ap);
    return -1;
}

int ei_error_set(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ei_error_vset(fmt, ap);
    va_end(ap);
    return -1;
}

int ei_error_prefix(const char *fmt, ...) {
    char old[EI_ERROR_CAP];
    memcpy(old, ei_err_buf, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(ei_err_buf, sizeof ei_err_buf, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof ei_err_buf)
        snprintf(ei_err_buf + n, sizeof ei_err_buf - (size_t)n, "%s", old);
    return -1;
}

const char *ei_error_get(void) { return ei_err_buf; }

void ei_error_clear(void) { ei_err_buf[0] = '\0'; }

void ei_error_print(const char *cmd) {
    fprintf(stderr, "ei %s: error: %s\n", cmd ? cmd : "", ei_err_buf[0] ? ei_err_buf : "unknown error");
}

size_t ei_json_depth(const char *text, size_t n) {
    size_t depth = 0, max = 0;
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max) max = depth;
        } else if ((c == ']' || c == '}') && depth) {
            depth--;
        }
    }
    return max;
}
