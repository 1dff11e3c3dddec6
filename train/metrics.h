/* Training output: one JSON object per line in metrics.jsonl, flushed after every line so a killed
 * run loses nothing it reported, and a one-line progress report on stderr.
 *
 * A line looks like
 *   {"step": 12, "loss": 2.31, "lr": 0.005, "grad_norm": 0.41, "tokens_per_s": 5120.3,
 *    "gate_mean": [0.49, ...], "gate_std": [0.01, ...], "val_loss": 2.4, "bad_steps": 0}
 * (on one line). Optional fields are left out when unknown; non-finite numbers are written as null.
 * `ei plot` reads these files. */
#ifndef EI_METRICS_H
#define EI_METRICS_H

#include <stdint.h>
#include <stdio.h>

typedef struct {
    int64_t step;          /* 1-based number of the optimizer step just finished */
    double loss;           /* mean training loss over the step's tokens */
    double lr;
    double grad_norm;      /* before clipping */
    double tokens_per_s;
    int64_t tokens;        /* tokens in this step (0: not written) */
    int n_layers;          /* length of gate_mean / gate_std; 0: not written */
    const double *gate_mean, *gate_std;
    int has_val;           /* val_loss (and val_exact when >= 0) are written */
    double val_loss;
    double val_exact;      /* exact-match rate of generated answers; < 0: not written */
    int bad_steps;         /* consecutive skipped steps (non-finite loss/gradient) */
    int skipped;           /* this step was skipped */
    int empty;             /* skipped because its batch held no loss-masked token (not counted in bad_steps) */
} ei_metrics_row;

typedef struct ei_metrics ei_metrics;

/* Opens path for writing. resume_step < 0 starts a new file (truncating an old one). Otherwise
 * the file is kept up to and including the line of step resume_step, and later lines (written
 * after the checkpoint a resumed run starts from) and a partial last line are dropped. The
 * returned writer is freed by ei_metrics_close. */
ei_metrics *ei_metrics_open(const char *path, int64_t resume_step);
int ei_metrics_write(ei_metrics *m, const ei_metrics_row *r);
/* Writes an arbitrary pre-formatted JSON object line (e.g. a final summary). */
int ei_metrics_write_raw(ei_metrics *m, const char *json_object);
void ei_metrics_close(ei_metrics *m);

/* Formats one metrics line (without the newline) into buf. Returns the length it needed. */
int ei_metrics_format(const ei_metrics_row *r, char *buf, size_t n);

/* Progress line: "step 120/1000  loss 2.3100  lr 4.87e-03  |g| 0.412  5.1k tok/s  ETA 3m05s".
 * Rewritten in place (\r) on a terminal, one line per report otherwise. */
typedef struct {
    double t_start;
    int64_t step_start; /* step at which timing started (a resumed run starts later) */
    int64_t total;      /* last step of the run */
    double min_interval; /* seconds between reports when not a terminal; 0: every call */
    double t_last;
    int tty;
    FILE *fp;
} ei_progress;

void ei_progress_init(ei_progress *p, FILE *fp, int64_t step_start, int64_t total);
/* Prints the progress for row r (rate limited except for the last step). */
void ei_progress_report(ei_progress *p, const ei_metrics_row *r);
/* Ends the progress line (a newline on terminals). */
void ei_progress_done(ei_progress *p);
/* "45s", "3m05s", "2h07m", "3d04h"; "?" for negative or non-finite. */
void ei_format_duration(double seconds, char *buf, size_t n);

#endif
