/* Shared by the fuzz targets (tests/fuzz/fuzz_<reader>.c).
 *
 * Each target defines LLVMFuzzerTestOneInput (and optionally LLVMFuzzerInitialize). Built with
 * -DEI_FUZZ=ON (clang) it links libFuzzer's main; otherwise (gcc, any build) replay_main.c supplies a
 * main() that feeds it every file of the directories or files on its command line, so the corpora
 * and regression inputs run in the ordinary release and ASan+UBSan builds (tests/cli_fuzz.sh).
 *
 * Readers take paths, so most targets write their input to a file in a private per-process folder
 * (fz_write) and read it back through the project's own entry point. A target calls fz_fail when
 * a promise of the reader's interface is broken (an id outside the vocabulary, a result that does
 * not read back): abort() makes libFuzzer keep the input, like any crash. */
#ifndef EI_FUZZ_H
#define EI_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* This process's scratch folder (created on first use, removed with its files at exit). */
const char *fz_dir(void);
/* fz_dir()/name into buf (cap bytes); returns buf. */
char *fz_path(char *buf, size_t cap, const char *name);
/* Writes size bytes to fz_dir()/name, replacing it; the path goes into buf, which is returned.
 * Aborts if the write fails: that is the harness's problem, not the reader's. */
char *fz_write(char *buf, size_t cap, const char *name, const void *data, size_t size);
/* A fixture file: $EI_FIXTURES/rel, else the EI_FIXTURES the build was configured with. */
char *fz_fixture(char *buf, size_t cap, const char *rel);
/* A file of the source tree: $EI_SOURCE_DIR/rel, else the source folder of the build. */
char *fz_source(char *buf, size_t cap, const char *rel);

/* Reports a broken invariant and aborts. */
void fz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Sends stdout to /dev/null (readers that print statistics would flood the fuzzer's log). */
void fz_quiet_stdout(void);

/* With EI_FUZZ_VERBOSE=1: prints whether the reader accepted the input, or its error (to see how
 * far a corpus gets; silent otherwise). */
void fz_note(const char *what, int ok);

/* Reads every byte of [p, p + n) (returns their sum, to be used or ignored). */
uint64_t fz_touch(const void *p, size_t n);

/* Structured inputs: reads numbers off the front of the input; past its end every value is 0. */
typedef struct {
    const uint8_t *p;
    size_t n;
} fz_bytes;
uint8_t fz_u8(fz_bytes *b);
uint32_t fz_u32(fz_bytes *b);
uint64_t fz_u64(fz_bytes *b);
/* A value in [0, n) (0 when n == 0). */
uint32_t fz_below(fz_bytes *b, uint32_t n);
/* Up to max bytes (length from the input); *len receives how many. Points into the input. */
const uint8_t *fz_take(fz_bytes *b, size_t max, size_t *len);

#endif
