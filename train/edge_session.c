#include "train/edge_session.h"

#include "core/ei_error.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An unset integer must never be a value the user could mean. */
#define CHECK_CLI_INT(name, mn) _Static_assert((mn) > EI_CLI_UNSET_INT, "--" #name ": -1 is a valid value");
#define CHECK_CLI_FLOAT(name, mn)
#define CHECK_CLI_ENUM(name, mn)
#define CHECK_NOCLI_INT(name, mn)
#define CHECK_NOCLI_FLOAT(name, mn)
#define CHECK_NOCLI_ENUM(name, mn)
#define CHECK_(a, name, TYPE, ctype, def, mn, mx, CH, fl, CLI, ...) CHECK_##CLI##_##TYPE(name, mn)
EI_OPTS_TABLE(CHECK_, ~)

#define UNSET_CLI_INT(c, name) (c)->name = EI_CLI_UNSET_INT;
#define UNSET_CLI_FLOAT(c, name) (c)->name = NAN;
#define UNSET_CLI_ENUM(c, name) (c)->name = NULL;
#define UNSET_NOCLI_INT(c, name)
#define UNSET_NOCLI_FLOAT(c, name)
#define UNSET_NOCLI_ENUM(c, name)
#define UNSET_(c, name, TYPE, ctype, def, mn, mx, CH, fl, CLI, ...) UNSET_##CLI##_##TYPE(c, name)

void ei_cli_opts_default(ei_cli_opts *c) {
    memset(c, 0, sizeof *c);
    c->mode = "full";
    EI_OPTS_TABLE(UNSET_, c)
}

static char *help_text[EI_OPTS_COUNT];
static pthread_once_t help_once = PTHREAD_ONCE_INIT;

static void build_help(void) {
    ei_opts def;
    ei_opts_default(&def);
    for (int i = 0; i < EI_OPTS_COUNT; i++) {
        const ei_opt_desc *d = ei_opt_desc_at(i);
        if (!d->cli) continue;
        char v[64];
        ei_opts_get_str(&def, i, v, sizeof v);
        /* ei_args prints the unset value of a number as its default, so name it; names print none. */
        const char *unset = d->type == EI_OPT_INT ? "-1" : d->type == EI_OPT_FLOAT ? "nan" : "default";
        int n = snprintf(NULL, 0, "%s (%s = not given: from --gates, else %s)", d->help, unset, v);
        help_text[i] = n > 0 ? malloc((size_t)n + 1) : NULL;
        if (help_text[i]) snprintf(help_text[i], (size_t)n + 1, "%s (%s = not given: from --gates, else %s)", d->help, unset, v);
    }
}

const char *ei_cli_opt_help(int i) {
    pthread_once(&help_once, build_help);
    const ei_opt_desc *d = ei_opt_desc_at(i);
    if (!d) return "";
    return i >= 0 && i < EI_OPTS_COUNT && help_text[i] ? help_text[i] : d->help;
}

/* Each set command-line value over the options from the gate file or the defaults; errors name the
 * command-line option. */
#define APPLY_CLI_INT(c, name)                                                                          \
    if ((c)->name != EI_CLI_UNSET_INT && ei_opts_set_num(o, EI_OPT_##name, (c)->name) != 0)             \
        return ei_error_prefix("--%s: ", ei_opt_desc_at(EI_OPT_##name)->cli);
#define APPLY_CLI_FLOAT(c, name)                                                                        \
    if (!isnan((c)->name) && ei_opts_set_num(o, EI_OPT_##name, (c)->name) != 0)                         \
        return ei_error_prefix("--%s: ", ei_opt_desc_at(EI_OPT_##name)->cli);
#define APPLY_CLI_ENUM(c, name)                                                                         \
    if ((c)->name && ei_opts_set_str(o, EI_OPT_##name, (c)->name) != 0)                                 \
        return ei_error_prefix("--%s: ", ei_opt_desc_at(EI_OPT_##name)->cli);
#define APPLY_NOCLI_INT(c, name)
#define APPLY_NOCLI_FLOAT(c, name)
#define APPLY_NOCLI_ENUM(c, name)
#define APPLY_(c, name, TYPE, ctype, def, mn, mx, CH, fl, CLI, ...) APPLY_##CLI##_##TYPE(c, name)

static int apply_cli(ei_opts *o, const ei_cli_opts *c) {
    EI_OPTS_TABLE(APPLY_, c)
    return 0;
}

int ei_opts_context_check(const ei_opts *o, const ei_model_config *cfg, char *msg, size_t cap) {
    long span = (long)o->sink + o->window + o->segment;
    if (cap) msg[0] = '\0';
    if (!cfg || cfg->max_seq_len <= 0 || span <= cfg->max_seq_len) return 0;
    snprintf(msg, cap,
             "sink %d + window %d + segment %d = %ld tokens exceed the model's trained context of %d: RoPE "
             "positions up to %ld leave the range the model was trained on (lower the window or the segment)",
             o->sink, o->window, o->segment, span, cfg->max_seq_len, span - 1);
    return 1;
}

void ei_opts_warn_context(const char *who, const ei_opts *o, const ei_model_config *cfg) {
    char msg[512];
    if (ei_opts_context_check(o, cfg, msg, sizeof msg)) fprintf(stderr, "%s: warning: %s\n", who, msg);
}

int ei_cli_session_open(ei_cli_session *s, const ei_cli_opts *c, const ei_model *m) {
    memset(s, 0, sizeof *s);
    ei_opts_default(&s->opts);
    if (ei_mode_parse(c->mode, &s->mode) != 0) return ei_error_prefix("--mode: ");
    if (c->gates_path && s->mode != EI_MODE_EDGEINFINITE)
        return ei_error_set("--gates is only used with --mode edgeinfinite");
    if (c->gates_path && ei_gates_file_opts(c->gates_path, &s->opts) != 0) return -1;
    if (apply_cli(&s->opts, c) != 0) return -1;
    s->opts.bptt_segments = 0; /* training only: inference keeps no gradient to truncate */
    if (ei_opts_validate(&s->opts, &m->cfg) != 0) return -1;
    if (s->mode != EI_MODE_FULL) ei_opts_warn_context(c->who ? c->who : "ei", &s->opts, &m->cfg);
    if (s->mode == EI_MODE_EDGEINFINITE) {
        if (!(s->gates = ei_gates_new(&m->cfg, s->opts.gate, s->opts.gate_init_bias))) return -1;
        if (c->gates_path && ei_gates_load(s->gates, c->gates_path) != 0) {
            ei_cli_session_close(s);
            return -1;
        }
    }
    if (!(s->edge = ei_edge_new(m, &s->opts, s->gates, s->mode, AG_F32))) {
        ei_cli_session_close(s);
        return -1;
    }
    return 0;
}

void ei_cli_session_close(ei_cli_session *s) {
    ei_edge_free(s->edge);
    ei_gates_free(s->gates);
    s->edge = NULL;
    s->gates = NULL;
}

#define EI_CLI_SET_CLI_INT(name) any |= c->name != EI_CLI_UNSET_INT;
#define EI_CLI_SET_CLI_FLOAT(name) any |= !isnan(c->name);
#define EI_CLI_SET_CLI_ENUM(name) any |= c->name != NULL;
#define EI_CLI_SET_NOCLI_INT(name)
#define EI_CLI_SET_NOCLI_FLOAT(name)
#define EI_CLI_SET_NOCLI_ENUM(name)
#define EI_CLI_SET_(a, name, TYPE, ctype, def, mn, mx, CH, fl, CLI, ...) EI_CLI_SET_##CLI##_##TYPE(name)

int ei_cli_opts_any_set(const ei_cli_opts *c) {
    int any = 0;
    EI_OPTS_TABLE(EI_CLI_SET_, ~)
    return any;
}
