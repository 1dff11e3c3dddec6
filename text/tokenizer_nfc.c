/* Unicode NFC normalisation (Qwen's tokenizer.json normaliser): canonical decomposition, canonical
 * ordering of combining marks, canonical composition, with Hangul handled algorithmically. Tables are
 * generated (data/tokenizer_nfc_data.h). Invalid UTF-8 bytes pass through unchanged and block
 * composition across them. */
#include "text/tokenizer_internal.h"
#include "text/tokenizer_nfc_data.h"

#include <stdlib.h>
#include <string.h>

#define SBASE 0xAC00
#define LBASE 0x1100
#define VBASE 0x1161
#define TBASE 0x11A7
#define LCOUNT 19
#define VCOUNT 21
#define TCOUNT 28
#define NCOUNT (VCOUNT * TCOUNT)
#define SCOUNT (LCOUNT * NCOUNT)
#define RAW_BYTE 0x80000000u /* marks an invalid input byte carried through as is */

static int ccc_of(uint32_t cp) {
    if (cp < 0x300 || (cp & RAW_BYTE)) return 0;
    size_t lo = 0, hi = sizeof nfc_ccc / sizeof nfc_ccc[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (nfc_ccc[mid][0] == cp) return (int)nfc_ccc[mid][1];
        if (nfc_ccc[mid][0] < cp) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

static const uint32_t *decomp_of(uint32_t cp, uint32_t *n) {
    size_t lo = 0, hi = sizeof nfc_dec_index / sizeof nfc_dec_index[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (nfc_dec_index[mid][0] == cp) {
            *n = nfc_dec_index[mid][2];
            return nfc_dec_data + nfc_dec_index[mid][1];
        }
        if (nfc_dec_index[mid][0] < cp) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE && b < TBASE + TCOUNT)
        return a + (b - TBASE);
    size_t lo = 0, hi = sizeof nfc_comp / sizeof nfc_comp[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const uint32_t *e = nfc_comp[mid];
        if (e[0] == a && e[1] == b) return e[2];
        if (e[0] < a || (e[0] == a && e[1] < b)) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

static size_t put_utf8(uint32_t cp, char *o) {
    if (cp & RAW_BYTE) {
        o[0] = (char)(cp & 0xFF);
        return 1;
    }
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int ei_utf8_nfc(const char *s, size_t n, char **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    size_t i = 0;
    /* Text below U+0300 is always NFC: nothing there decomposes or combines. */
    while (i < n && (unsigned char)s[i] < 0xCC) i++;
    if (i == n) return 0;
    /* A canonical decomposition yields at most 1.5 code points per UTF-8 byte of its character
     * (checked over all of Unicode by the table generator's data); 2 per byte is a safe bound. */
    uint32_t *cps = malloc((n * 2 + 4) * sizeof *cps);
    if (!cps) return -1;
    size_t m = 0;
    for (i = 0; i < n;) {
        const unsigned char *p = (const unsigned char *)s + i;
        int cl = ei_utf8_valid_at(p, n - i);
        if (!cl) {
            cps[m++] = RAW_BYTE | p[0];
            i++;
            continue;
        }
        uint32_t cp = p[0];
        if (cl > 1) {
            cp &= 0x7Fu >> cl;
            for (int k = 1; k < cl; k++) cp = (cp << 6) | (p[k] & 0x3F);
        }
        i += (size_t)cl;
        uint32_t dn;
        const uint32_t *d;
        if (cp >= SBASE && cp < SBASE + SCOUNT) {
            uint32_t si = cp - SBASE;
            cps[m++] = LBASE + si / NCOUNT;
            cps[m++] = VBASE + (si % NCOUNT) / TCOUNT;
            if (si % TCOUNT) cps[m++] = TBASE + si % TCOUNT;
        } else if (cp >= 0xC0 && (d = decomp_of(cp, &dn))) {
            memcpy(cps + m, d, dn * sizeof *cps);
            m += dn;
        } else {
            cps[m++] = cp;
        }
    }
    /* Canonical ordering: stable insertion sort of each run of non-starters by class. */
    for (size_t a = 1; a < m; a++) {
        int ca = ccc_of(cps[a]);
        if (!ca) continue;
        size_t b = a;
        while (b > 0) {
            int cb = ccc_of(cps[b - 1]);
            if (cb <= ca) break;
            uint32_t tmp = cps[b];
            cps[b] = cps[b - 1];
            cps[b - 1] = tmp;
            b--;
        }
    }
    /* Canonical composition. */
    size_t w = 0;
    long starter = -1;
    int last_cc = 0;
    for (size_t r = 0; r < m; r++) {
        uint32_t cp = cps[r];
        int cc = ccc_of(cp);
        if (starter >= 0 && !(cp & RAW_BYTE) && (w == (size_t)starter + 1 || (last_cc != 0 && last_cc < cc))) {
            uint32_t c = compose_pair(cps[starter], cp);
            if (c) {
                cps[starter] = c;
                continue;
            }
        }
        if (cc == 0) {
            starter = (cp & RAW_BYTE) ? -1 : (long)w;
            last_cc = 0;
        } else {
            last_cc = cc;
        }
        cps[w++] = cp;
    }
    char *o = malloc(w * 4 + 1);
    if (!o) {
        free(cps);
        return -1;
    }
    size_t k = 0;
    for (size_t r = 0; r < w; r++) k += put_utf8(cps[r], o + k);
    o[k] = '\0';
    free(cps);
    *out = o;
    *out_len = k;
    return 0;
}
