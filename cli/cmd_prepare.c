/* `ei prepare`: builds HDF5 datasets, evaluation sets and passkey tasks (data/prepare.h). */
#include "cli/commands.h"
#include "core/ei_args.h"
#include "config/ei_config.h"
#include "core/ei_error.h"
#include "core/ei_io.h"
#include "data/prepare.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const DESCRIPTION =
    "Turns text files or JSONL into tokenised samples with loss masks, written as an HDF5 dataset\n"
    "(--output) and/or a compact evaluation set for the device (--eval-set); or generates passkey\n"
    "retrieval samples (--passkey). Inputs are the positional arguments.\n"
    "\n"
    "Text files (.txt, or --format text) are language-modelling data: one document per file\n"
    "(--doc-mode whole) or per paragraph (--doc-mode paragraphs: split on runs of blank lines); the loss\n"
    "covers every token. JSONL files (.jsonl/.json) name their fields with selectors:\n"
    "  field.sub        a value at a path; list[2] picks an element\n"
    "  list[].field     every element of an array; list[] the elements themselves\n"
    "  list[].{a}: {b}  every element formatted ({{ and }} are literal braces)\n"
    "  opt{gold}        a path built from another field's value: with gold = 2, the field opt2\n"
    "                   (options[{gold}] indexes an array; {opt{gold}} inside a format)\n"
    "--context values from an array are joined with --join; --instruction/--answer arrays give one\n"
    "sample per element (paired by index). Examples:\n"
    "  QMSum:   --context 'meeting_transcripts[].{speaker}: {content}'\n"
    "           --instruction 'general_query_list[].query' --answer 'general_query_list[].answer'\n"
    "  QuALITY: --context input --instruction 'instructions[]' --answer 'outputs[]'\n"
    "Instruction samples are [BOS] prompt answer [EOS] through --template (plain: context, newline,\n"
    "instruction, newline, answer; llama2-chat; chatml) or --template-string with {context},\n"
    "{instruction}, {answer} placeholders; the loss covers the answer, the template text after it and\n"
    "EOS. --max-tokens cuts the middle of the context (instruction and answer are never cut); LM\n"
    "documents are split into pieces (--lm-overflow split) or keep head and tail (cut).\n"
    "With --val-fraction F, round(F x documents) whole documents (seeded) go to <out>.val.h5 and the\n"
    "rest to <out>.train.h5; an evaluation set then takes the validation documents only. One long\n"
    "text: --max-tokens N --piece-docs makes each N-token piece a document, and the validation set a\n"
    "contiguous run of whole pieces.\n"
    "Passkey: --passkey --lengths 1024,4096 --depths 0,0.5,1 [--filler FILE] [--per-cell N].\n"
    "--config FILE reads the same options from YAML (prepare: {template_string: ..., max_tokens: ...});\n"
    "command-line options override it. Escapes \\n, \\t and \\\\ are expanded in --template-string, --join and\n"
    "the selectors (--context, --instruction, --answer).";

typedef struct {
    char *tokenizer, *output, *eval_set, *format, *doc_mode, *context, *instruction, *answer, *join;
    char *template_name, *template_string, *task, *lm_overflow, *filler, *lengths, *depths;
    int64_t max_tokens, min_tokens, max_docs, seed;
    double val_fraction;
    int skip_bad, per_cell, piece_docs;
} prepare_cfg;

#define K(name, type, field, def, help) {"prepare." name, type, offsetof(prepare_cfg, field), 1, 0, def, NULL, 0, 0, help}
static const ei_cfg_key cfg_keys[] = {
    K("tokenizer", EI_CFG_STRING, tokenizer, NULL, "tokenizer file or folder"),
    K("output", EI_CFG_STRING, output, NULL, "HDF5 output"),
    K("eval_set", EI_CFG_STRING, eval_set, NULL, "evaluation set output"),
    K("format", EI_CFG_STRING, format, NULL, "auto, text or jsonl"),
    K("doc_mode", EI_CFG_STRING, doc_mode, NULL, "whole or paragraphs"),
    K("context", EI_CFG_STRING, context, NULL, "context selector"),
    K("instruction", EI_CFG_STRING, instruction, NULL, "instruction selector"),
    K("answer", EI_CFG_STRING, answer, NULL, "answer selector"),
    K("join", EI_CFG_STRING, join, NULL, "separator for joined context arrays"),
    K("template", EI_CFG_STRING, template_name, NULL, "built-in template"),
    K("template_string", EI_CFG_STRING, template_string, NULL, "custom template"),
    K("task", EI_CFG_STRING, task, NULL, "evaluation task type"),
    K("lm_overflow", EI_CFG_STRING, lm_overflow, NULL, "split or cut"),
    K("filler", EI_CFG_STRING, filler, NULL, "passkey filler text"),
    K("lengths", EI_CFG_STRING, lengths, NULL, "passkey lengths"),
    K("depths", EI_CFG_STRING, depths, NULL, "passkey depths"),
    {"prepare.max_tokens", EI_CFG_I64, offsetof(prepare_cfg, max_tokens), 0, 1e15, "0", NULL, 0, 0, "max tokens"},
    {"prepare.min_tokens", EI_CFG_I64, offsetof(prepare_cfg, min_tokens), 0, 1e15, "0", NULL, 0, 0, "min tokens"},
    {"prepare.max_docs", EI_CFG_I64, offsetof(prepare_cfg, max_docs), 0, 1e15, "0", NULL, 0, 0, "max documents"},
    {"prepare.seed", EI_CFG_I64, offsetof(prepare_cfg, seed), 0, 9e15, "1234", NULL, 0, 0, "seed"},
    {"prepare.val_fraction", EI_CFG_FLOAT, offsetof(prepare_cfg, val_fraction), 0, 0.999, "0", NULL, 0, 0, "val fraction"},
    {"prepare.skip_bad", EI_CFG_BOOL, offsetof(prepare_cfg, skip_bad), 1, 0, "false", NULL, 0, 0, "skip bad lines"},
    {"prepare.per_cell", EI_CFG_INT, offsetof(prepare_cfg, per_cell), 1, 1e6, "1", NULL, 0, 0, "passkey samples per cell"},
    {"prepare.piece_docs", EI_CFG_BOOL, offsetof(prepare_cfg, piece_docs), 1, 0, "false", NULL, 0, 0,
     "each piece of a split document is its own document"},
    {0}};
#undef K

/* Expands \n, \t, \\ in place. */
static void unescape(char *s) {
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && (r[1] == 'n' || r[1] == 't' || r[1] == '\\')) {
            *w++ = r[1] == 'n' ? '\n' : r[1] == 't' ? '\t' : '\\';
            r++;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

/* The config file is itself an option, and its values are the defaults of the others: find it
 * before parsing. */
static const char *find_config(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) return argv[i + 1];
        if (strncmp(argv[i], "--config=", 9) == 0) return argv[i] + 9;
    }
    return NULL;
}

int ei_cmd_prepare(int argc, char **argv) {
    prepare_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    ei_config c;
    const char *config = find_config(argc, argv);
    if (ei_config_init(&c, cfg_keys, &cfg) != 0 || (config && ei_config_load_file(&c, config) != 0)) {
        ei_error_print("prepare");
        ei_config_release(&c);
        return 2;
    }
    const char *tokenizer = cfg.tokenizer, *output = cfg.output, *eval_set = cfg.eval_set, *format = cfg.format;
    const char *doc_mode = cfg.doc_mode, *context = cfg.context, *instruction = cfg.instruction;
    const char *answer = cfg.answer, *join = NULL, *tpl = cfg.template_name, *tpl_string = NULL;
    const char *task = cfg.task, *lm_overflow = cfg.lm_overflow, *filler = cfg.filler, *lengths = cfg.lengths;
    const char *depths = cfg.depths;
    int64_t max_tokens = cfg.max_tokens, min_tokens = cfg.min_tokens, max_docs = cfg.max_docs, seed = cfg.seed;
    double val_fraction = cfg.val_fraction;
    int skip_bad = cfg.skip_bad, quiet = 0, passkey = 0, per_cell = cfg.per_cell, piece_docs = cfg.piece_docs;
    ei_arg opts[] = {
        {"tokenizer", EI_ARG_STR, &tokenizer, "PATH", "tokenizer.bin / .model / .json or a model folder (required)"},
        {"o", EI_ARG_STR, &output, "OUT.h5", "HDF5 dataset to write (with a split: OUT.train.h5, OUT.val.h5)"},
        {"output", EI_ARG_STR, &output, "OUT.h5", "same as -o"},
        {"eval-set", EI_ARG_STR, &eval_set, "OUT.eis", "evaluation set to write"},
        {"config", EI_ARG_STR, &config, "FILE", "YAML file with a 'prepare:' section of these options"},
        {"format", EI_ARG_STR, &format, "F", "auto (by extension), text or jsonl [auto]"},
        {"doc-mode", EI_ARG_STR, &doc_mode, "M", "text files: whole or paragraphs [whole]"},
        {"context", EI_ARG_STR, &context, "SEL", "JSONL selector of the context (joined when an array)"},
        {"instruction", EI_ARG_STR, &instruction, "SEL", "JSONL selector of the instruction/question"},
        {"answer", EI_ARG_STR, &answer, "SEL", "JSONL selector of the answer"},
        {"join", EI_ARG_STR, &join, "SEP", "separator between joined context values [\\n]"},
        {"template", EI_ARG_STR, &tpl, "NAME", "plain, llama2-chat or chatml [plain]"},
        {"template-string", EI_ARG_STR, &tpl_string, "T",
         "custom template, e.g. '{context}\\n\\nQuestion: {instruction}\\nAnswer: {answer}'"},
        {"task", EI_ARG_STR, &task, "T", "eval-set task type: qa, choice, summary, lm, passkey [qa or lm]"},
        {"max-tokens", EI_ARG_I64, &max_tokens, "N", "longest sample in tokens (0: no limit)"},
        EI_ARG_RANGE(0, 1e15),
        {"min-tokens", EI_ARG_I64, &min_tokens, "N", "drop samples shorter than N tokens"},
        EI_ARG_RANGE(0, 1e15),
        {"lm-overflow", EI_ARG_STR, &lm_overflow, "M", "LM documents over --max-tokens: split or cut [split]"},
        {"piece-docs", EI_ARG_FLAG, &piece_docs, NULL,
         "with --max-tokens: each piece of a split document counts as its own document (own doc id; "
         "--val-fraction takes a contiguous run of whole pieces)"},
        {"max-docs", EI_ARG_I64, &max_docs, "N", "use only the first N documents (0: all)"},
        EI_ARG_RANGE(0, 1e15),
        {"val-fraction", EI_ARG_FLOAT, &val_fraction, "F", "fraction of documents for validation"},
        EI_ARG_RANGE(0, 0.999),
        {"seed", EI_ARG_I64, &seed, "S", "seed of the split and of passkey keys"},
        EI_ARG_RANGE(0, 9e15),
        {"skip-bad", EI_ARG_FLAG, &skip_bad, NULL, "skip malformed JSONL lines / lines missing fields (reported)"},
        {"passkey", EI_ARG_FLAG, &passkey, NULL, "generate passkey retrieval samples instead of reading inputs"},
        {"filler", EI_ARG_STR, &filler, "FILE", "passkey filler text [built-in sentences]"},
        {"lengths", EI_ARG_STR, &lengths, "L,..", "passkey prompt lengths in tokens [1024]"},
        {"depths", EI_ARG_STR, &depths, "D,..", "passkey key depths in [0,1] [0,0.25,0.5,0.75,1]"},
        {"per-cell", EI_ARG_INT, &per_cell, "N", "passkey samples per (length, depth)"},
        EI_ARG_RANGE(1, 1e6),
        {"quiet", EI_ARG_FLAG, &quiet, NULL, "no progress line"},
        {0}};
    char **pos = NULL;
    int npos = 0;
    int rc = ei_args_parse(argc, argv, "ei prepare", DESCRIPTION, opts, &pos, &npos);
    if (rc) {
        ei_config_release(&c);
        return rc < 0 ? 2 : 0;
    }
    /* Command-line text gets escapes expanded; YAML strings already have theirs. Values that came
     * from the config file are left alone (the pointers still point into it). */
    const char *const cli_text[] = {tpl_string, join, context != cfg.context ? context : NULL,
                                    instruction != cfg.instruction ? instruction : NULL,
                                    answer != cfg.answer ? answer : NULL};
    enum { N_CLI_TEXT = sizeof cli_text / sizeof cli_text[0] };
    char *copy[N_CLI_TEXT] = {0};
    int oom = 0;
    for (int i = 0; i < N_CLI_TEXT; i++) {
        if (!cli_text[i]) continue;
        if (!(copy[i] = strdup(cli_text[i]))) oom = 1;
        else unescape(copy[i]);
    }
    if (oom) {
        for (int i = 0; i < N_CLI_TEXT; i++) free(copy[i]);
        ei_config_release(&c);
        free(pos);
        fprintf(stderr, "ei prepare: error: out of memory\n");
        return 1;
    }
    char *tpl_copy = copy[0], *join_copy = copy[1];
    ei_prepare_opts o = {
        .inputs = (const char **)pos,
        .n_inputs = npos,
        .format = format,
        .doc_mode = doc_mode,
        .context = copy[2] ? copy[2] : context,
        .instruction = copy[3] ? copy[3] : instruction,
        .answer = copy[4] ? copy[4] : answer,
        .join = join_copy ? join_copy : cfg.join,
        .template_name = tpl,
        .template_string = tpl_copy ? tpl_copy : cfg.template_string,
        .task = task,
        .lm_overflow = lm_overflow,
        .max_tokens = max_tokens,
        .min_tokens = min_tokens,
        .max_docs = max_docs,
        .val_fraction = val_fraction,
        .seed = (uint64_t)seed,
        .skip_bad = skip_bad,
        .quiet = quiet,
        .output = output,
        .eval_set = eval_set,
        .tokenizer_path = tokenizer,
        .passkey = passkey,
        .filler = filler,
        .lengths = lengths,
        .depths = depths,
        .per_cell = per_cell,
        .piece_docs = piece_docs,
    };
    const char *cfg_in[] = {config};
    if (!o.tokenizer_path) {
        fprintf(stderr, "ei prepare: error: --tokenizer is required (see --help)\n");
        rc = 2;
    } else if (ei_check_not_input(output, cfg_in, 1) != 0 || ei_check_not_input(eval_set, cfg_in, 1) != 0 ||
               ei_prepare_run(&o) != 0) {
        ei_error_print("prepare");
        rc = 1;
    }
    for (int i = 0; i < N_CLI_TEXT; i++) free(copy[i]);
    ei_config_release(&c);
    free(pos);
    return rc;
}
