/* Error reporting shared by every module.
 *
 * Functions that can fail return an int (0 = success, -1 = failure) or a NULL pointer, and leave a
 * human-readable message in a thread-local buffer that names the file and what is wrong. The caller
 * that decides to give up prints ei_error_get(); nobody in the library calls exit() or abort() on
 * bad input. */
#ifndef EI_ERROR_H
#define EI_ERROR_H

#include <stdarg.h>

/* Replaces the current message (printf-style). Always returns -1 so that `return ei_error_set(...)`
 * reads naturally. */
int ei_error_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int ei_error_vset(const char *fmt, va_list ap);
/* Prefixes the current message with more context, e.g. "loading model: " + "file.bin: truncated". */
int ei_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The current message ("" if none). Valid until the next ei_error_* call on this thread. */
const char *ei_error_get(void);
void ei_error_clear(void);

/* Deepest nesting of [ and { outside strings in text[0..n). JSON readers call it on the text up to
 * the parser's error position, to report "nested deeper than N levels" (the parser's limit) instead
 * of "malformed JSON" when that is the cause. */
#include <stddef.h>
size_t ei_json_depth(const char *text, size_t n);

/* Prints "ei <cmd>: error: <message>" to stderr. */
void ei_error_print(const char *cmd);

#endif
