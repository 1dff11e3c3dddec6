/* Splitting plain text into paragraphs: the one rule behind `ei prepare --doc-mode paragraphs`
 * (docs/datasets.md) and `ei eval --paragraphs`, so that both see the same documents.
 *
 * The rule:
 *   - A line is the text up to an LF ('\n') or the end of the text.
 *   - A line is blank when it is empty or holds only spaces, tabs, CR, FF or VT.
 *   - A paragraph is a maximal run of non-blank lines. Its span starts at the first byte of its
 *     first line (indentation is kept, like every other line's) and ends at the end of its last
 *     line with trailing spaces, tabs, CR, FF and VT removed. The LFs between its lines are part of
 *     the span: the lines stay joined by "\n".
 *   - Runs of blank lines, and blank lines before the first or after the last paragraph, only
 *     separate; no empty paragraph is ever returned. A text with no non-blank line has none.
 *   - CR: a line holding only CRs and blanks is blank, and the CR of a final CRLF is trimmed, so
 *     CRLF text has the same paragraph boundaries as LF text. CRs inside a paragraph are kept, since
 *     spans point into the caller's unmodified text: call ei_text_normalize first for LF-only
 *     paragraphs (ei prepare does, on every text file it loads).
 *   - Bytes are not interpreted otherwise (UTF-8 passes through; a NUL byte is an ordinary byte).
 */
#ifndef EI_TEXT_PARAGRAPHS_H
#define EI_TEXT_PARAGRAPHS_H

#include <stddef.h>

typedef struct {
    size_t start; /* byte offset into the text */
    size_t len;   /* bytes; never 0 */
} ei_span;

/* Splits text[0..len) by the rule above. *spans: malloc'd array of *n spans in text order (NULL
 * when *n is 0); the caller frees it. Returns 0, or -1 with ei_error set (out of memory; *spans is
 * then NULL and *n 0). */
int ei_text_paragraphs(const char *text, size_t len, ei_span **spans, size_t *n);

/* Normalises text in place the way `ei prepare` reads text files: drops a leading UTF-8 byte-order
 * mark and turns every CRLF into LF (a CR not followed by LF stays). Returns the new length and
 * writes a NUL there, so the buffer must hold len + 1 bytes (as ei_file_read_all's does). */
size_t ei_text_normalize(char *text, size_t len);

/* Where a long text may be cut so that its pieces encode to the tokens of the whole: the largest
 * k in (0, n) with text[k] a space between two characters that are not white space (so text[0..k)
 * ends in a word and text[k..n) starts with " word"), or 0 when there is none. Encoding the first
 * piece with ei_tokenizer_encode and each later one with ei_tokenizer_encode_cont then gives the
 * tokens of the whole text (text/tokenizer.h); `ei eval --ppl` streams long files this way. */
size_t ei_text_cut(const char *text, size_t n);

#endif
