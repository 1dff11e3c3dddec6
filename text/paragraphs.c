#include "text/paragraphs.h"

#include "core/ei_error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Whitespace that leaves a line blank; LF ends lines, so it is not among them. */
static int blank_byte(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

static int push(ei_span **a, size_t *n, size_t *cap, size_t start, size_t len) {
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        if (nc > SIZE_MAX / sizeof **a) return -1;
        ei_span *g = realloc(*a, nc * sizeof **a);
        if (!g) return -1;
        *a = g;
        *cap = nc;
    }
    (*a)[*n].start = start;
    (*a)[*n].len = len;
    (*n)++;
    return 0;
}

int ei_text_paragraphs(const char *text, size_t len, ei_span **spans, size_t *n) {
    ei_span *a = NULL;
    size_t cnt = 0, cap = 0;
    /* start: first byte of the open paragraph; end: its last non-blank line's end, trimmed. */
    size_t start = 0, end = 0;
    int open = 0, rc = 0;
    for (size_t i = 0; i < len && rc == 0;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - text) : len, t = e;
        while (t > i && blank_byte(text[t - 1])) t--;
        if (t > i) {
            if (!open) start = i;
            open = 1;
            end = t;
        } else if (open) {
            rc = push(&a, &cnt, &cap, start, end - start);
            open = 0;
        }
        i = e + 1;
    }
    if (rc == 0 && open) rc = push(&a, &cnt, &cap, start, end - start);
    if (rc != 0) {
        free(a);
        *spans = NULL;
        *n = 0;
        return ei_error_set("out of memory splitting %zu bytes of text into paragraphs", len);
    }
    *spans = a;
    *n = cnt;
    return 0;
}

size_t ei_text_normalize(char *s, size_t n) {
    size_t r = 0, w = 0;
    if (n >= 3 && (unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xBB && (unsigned char)s[2] == 0xBF) r = 3;
    for (; r < n; r++) {
        if (s[r] == '\r' && r + 1 < n && s[r + 1] == '\n') continue;
        s[w++] = s[r];
    }
    s[w] = '\0';
    return w;
}

static int is_white(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

size_t ei_text_cut(const char *s, size_t n) {
    for (size_t k = n >= 2 ? n - 2 : 0; k > 0; k--)
        if (s[k] == ' ' && !is_white(s[k - 1]) && !is_white(s[k + 1])) return k;
    return 0;
}
