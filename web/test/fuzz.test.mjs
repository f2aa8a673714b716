// Fuzzing the painter's parsers of untrusted bytes under Node (issue 23 item 2): the PNG decoder (png.js)
// and the frame encoder/decoder (protocol.js), by a seeded mutation loop over a seed corpus (fixtures/*.png,
// the painter's own label PNGs, frames the server packed). Mutations: bit flips, truncations, forged chunk
// lengths, forged IHDR sizes / depths / colour types with valid CRCs, chunk data changed with its CRC made
// valid, chunks dropped or repeated, IDAT replaced by valid zlib of other bytes.
//
// Property for every input: a valid result or the parser's own error (PngError, FrameError), never another
// exception, never a hang (HANG_MS per input), never more memory than the pixel budget justifies; when pngjs
// (the reference) reads the input too, the same pixels. FUZZ_INPUTS=N (default 2000 per target) and
// FUZZ_SEED=S run longer campaigns; the summary line goes to stderr (docs/fuzzing.md, "JavaScript").
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { deflateSync, inflateSync } from "node:zlib";
import { PngError, crc32, decodePng, encodeLabelPng, pngChunk } from "../../spade_rt/serve/static/png.js";
import { FrameError, pack, unpack } from "../../spade_rt/serve/static/protocol.js";
import { FIXTURES, differsFromReference, fixture, referenceRead, rng } from "./reference.mjs";

const INPUTS = Number(process.env.FUZZ_INPUTS || 2000);
const SEED = Number(process.env.FUZZ_SEED || 20261204);
const BUDGET = 4096; // pixels a fuzzed PNG may have (the painter passes /v1/model's max_map_pixels)
const HANG_MS = 1000; // one small input: generous, a hang is a stuck loop, not a slow machine
const MEMORY_SLACK = 16 * 2 ** 20; // one decode may grow array buffers this much, no more (a 4096-pixel image needs < 0.1 MiB)

function chunks(b) { // [{at, length, type}] of a PNG-like byte string, as far as it parses
  const out = [], dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let o = 8; o + 12 <= b.length;) {
    const n = dv.getUint32(o);
    if (o + 12 + n > b.length) break;
    out.push({ at: o, length: n, type: String.fromCharCode(...b.subarray(o + 4, o + 8)) });
    o += 12 + n;
  }
  return out;
}

function fixCrc(b, c) {
  new DataView(b.buffer, b.byteOffset).setUint32(c.at + 8 + c.length, crc32(b.subarray(c.at + 4, c.at + 8 + c.length)));
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

const PNG_MUTATIONS = {
  flip(b, r) { for (let k = 1 + Math.floor(r() * 8); k > 0; k--) b[Math.floor(r() * b.length)] ^= 1 << Math.floor(r() * 8); return b; },
  truncate(b, r) { return b.subarray(0, Math.floor(r() * b.length)); },
  length(b, r) { // a chunk's length forged: huge, zero, or off by a little
    const cs = chunks(b);
    if (!cs.length) return b;
    const c = cs[Math.floor(r() * cs.length)], dv = new DataView(b.buffer, b.byteOffset);
    const forged = [0, 0xffffffff, 0x7fffffff, c.length + 1, Math.max(0, c.length - 1), Math.floor(r() * 2 ** 32)];
    dv.setUint32(c.at, forged[Math.floor(r() * forged.length)]);
    return b;
  },
  ihdr(b, r) { // the header forged, CRC valid: size, depth, colour type, interlace
    const c = chunks(b).find((x) => x.type === "IHDR" && x.length >= 13);
    if (!c) return b;
    const dv = new DataView(b.buffer, b.byteOffset), d = c.at + 8;
    const sizes = [0, 1, 2, 64, 65, 4096, 4097, 65535, 0x7fffffff, 0xffffffff, Math.floor(r() * 2 ** 32)];
    const pick = () => sizes[Math.floor(r() * sizes.length)];
    const field = Math.floor(r() * 5);
    if (field === 0) dv.setUint32(d, pick());
    else if (field === 1) dv.setUint32(d + 4, pick());
    else if (field === 2) b[d + 8] = [1, 2, 4, 8, 16, 3, 0, 255][Math.floor(r() * 8)];
    else if (field === 3) b[d + 9] = [0, 2, 3, 4, 6, 1, 7][Math.floor(r() * 7)];
    else b[d + 12] = Math.floor(r() * 3);
    fixCrc(b, c);
    return b;
  },
  data(b, r) { // bytes inside one chunk changed, its CRC made valid (the reference reads it)
    const cs = chunks(b).filter((x) => x.length > 0);
    if (!cs.length) return b;
    const c = cs[Math.floor(r() * cs.length)];
    for (let k = 1 + Math.floor(r() * 4); k > 0; k--) b[c.at + 8 + Math.floor(r() * c.length)] = Math.floor(r() * 256);
    fixCrc(b, c);
    return b;
  },
  shuffle(b, r) { // a chunk dropped or repeated
    const cs = chunks(b);
    if (!cs.length) return b;
    const c = cs[Math.floor(r() * cs.length)], piece = b.subarray(c.at, c.at + 12 + c.length);
    const head = b.subarray(0, c.at), tail = b.subarray(c.at + 12 + c.length);
    return r() < 0.5 ? concat([head, tail]) : concat([head, piece, piece, tail]);
  },
  idat(b, r) { // the image data replaced by valid zlib of other bytes: short, long or the right length
    const cs = chunks(b), ihdr = cs.find((x) => x.type === "IHDR");
    const first = cs.findIndex((x) => x.type === "IDAT");
    if (!ihdr || first < 0) return b;
    const raw = new Uint8Array(Math.floor(r() * 3000));
    for (let i = 0; i < raw.length; i++) raw[i] = r() < 0.3 ? Math.floor(r() * 5) : Math.floor(r() * 256);
    const idat = pngChunk("IDAT", deflateSync(raw));
    const rest = cs.filter((x) => x.type !== "IDAT").map((x) => b.subarray(x.at, x.at + 12 + x.length));
    const at = cs.filter((x, i) => x.type !== "IDAT" && i < first).length;
    return concat([b.subarray(0, 8), ...rest.slice(0, at), idat, ...rest.slice(at)]);
  },
};

function pngCorpus() {
  const files = readdirSync(FIXTURES).filter((f) => f.endsWith(".png")).map((f) => fixture(f));
  const ids = new Uint8Array(32 * 24).map((_, i) => (i * 13) % 182);
  const wide = new Uint16Array(20 * 20).map((_, i) => (i * 331) % 1000);
  return [...files, encodeLabelPng(ids, 32, 24, false), encodeLabelPng(wide, 20, 20, true)];
}

/**
 * Valid by the spec's rules, strictly: IHDR first, image data present, IEND, and zlib (Node's, which checks
 * the header and the Adler-32) inflates the image data. pngjs alone is lenient (it reads PNGs without IDAT and
 * stops inflating once it has the bytes it needs, checksums unread), so "pngjs reads it" is not validity.
 */
function strictlyValid(b) {
  const cs = [];
  for (const c of chunks(b)) { cs.push(c); if (c.type === "IEND") break; }
  if (!cs.length || cs[0].type !== "IHDR" || cs[cs.length - 1].type !== "IEND") return false;
  if (cs.filter((c) => c.type === "IHDR").length !== 1 || cs.filter((c) => c.type === "PLTE").length > 1) return false;
  const idat = cs.filter((c) => c.type === "IDAT").map((c) => b.subarray(c.at + 8, c.at + 8 + c.length));
  if (!idat.length || cs[0].length !== 13) return false;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength), W = dv.getUint32(16), H = dv.getUint32(20);
  const channels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[b[25]], depths = { 0: [1, 2, 4, 8, 16], 3: [1, 2, 4, 8] }[b[25]] || [8, 16];
  if (!W || !H || !channels || !depths.includes(b[24])) return false;
  try { // the image data must inflate to at least a filter byte and a scanline per row
    return inflateSync(concat(idat)).length >= H * (1 + Math.ceil((W * channels * b[24]) / 8));
  } catch (_) {
    return false;
  }
}

function withTimeout(promise, ms) {
  let timer;
  const late = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`hang: over ${ms} ms`)), ms); });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

test(`fuzz: the PNG decoder on ${INPUTS} mutated PNGs (seed ${SEED})`, async () => {
  const r = rng(SEED), corpus = pngCorpus(), names = Object.keys(PNG_MUTATIONS);
  const tally = { decoded: 0, refused: 0, comparedWithReference: 0, refusedButReferenceReads: 0 };
  const refusals = new Map(), findings = [];
  let grew = 0;
  for (let i = 0; i < INPUTS; i++) {
    let b = corpus[Math.floor(r() * corpus.length)].slice();
    for (let k = 1 + Math.floor(r() * 3); k > 0; k--) b = PNG_MUTATIONS[names[Math.floor(r() * names.length)]](b.slice(), r);
    let result = null, error = null;
    const before = process.memoryUsage().arrayBuffers;
    try {
      result = await withTimeout(decodePng(b, BUDGET), HANG_MS);
    } catch (err) {
      error = err;
    }
    const ours = process.memoryUsage().arrayBuffers;
    grew = Math.max(grew, ours - before);
    // the reference only where the header's size is within the budget (pngjs allocates what IHDR says first);
    // it checks no CRCs here, as the painter does not
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength), headers = chunks(b).filter((x) => x.type === "IHDR");
    const small = headers.length > 0 && headers.every((x) => { // (pngjs allocates per row: H alone counts too)
      const w = x.length >= 8 ? dv.getUint32(x.at + 8) : 0, h = x.length >= 8 ? dv.getUint32(x.at + 12) : 0;
      return w > 0 && h > 0 && w * h <= BUDGET;
    });
    const ref = small ? referenceRead(b, false) : null; // (any IHDR: pngjs takes the last, the painter refuses two)
    const after = process.memoryUsage().arrayBuffers;
    if (process.env.FUZZ_DEBUG === "memory" && Math.max(ours, after) - before > MEMORY_SLACK) {
      process.stderr.write(`input ${i}: ours +${(ours - before) / 2 ** 20} MiB, the reference +${(after - ours) / 2 ** 20} MiB ${JSON.stringify(chunks(b))} ${b.subarray(16, 29)} ${error && error.message}\n`);
    }
    if (process.env.FUZZ_DEBUG && Number(process.env.FUZZ_DEBUG) === i) {
      process.stderr.write(`input ${i}: ${JSON.stringify(chunks(b))} ${error && error.message}\n`);
    }
    if (error) {
      if (!(error instanceof PngError)) { findings.push(`input ${i}: ${error.name}: ${error.message}`); continue; }
      tally.refused++;
      const why = error.message.replace(/\d+/g, "N");
      refusals.set(why, (refusals.get(why) || 0) + 1);
      if (ref && strictlyValid(b) && !/interlaced/.test(error.message)) {
        tally.refusedButReferenceReads++;
        findings.push(`input ${i}: refused (${error.message}) but pngjs reads ${ref.width}x${ref.height}`);
      }
      continue;
    }
    tally.decoded++;
    if (result.W * result.H > BUDGET || result.data.length !== result.W * result.H * result.channels) {
      findings.push(`input ${i}: ${result.W}x${result.H}, ${result.data.length} samples: over the budget or the wrong count`);
    }
    if (ref) {
      tally.comparedWithReference++;
      const diff = differsFromReference(result, ref);
      if (diff) findings.push(`input ${i}: differs from pngjs: ${diff}`);
    }
  }
  process.stderr.write(`fuzz png: ${INPUTS} inputs, seed ${SEED}: ${JSON.stringify(tally)}, one decode grew array buffers by ${(grew / 2 ** 20).toFixed(2)} MiB at most; refusals ${JSON.stringify(Object.fromEntries(refusals))}\n`);
  assert.ok(grew < MEMORY_SLACK, `one decode grew array buffers by ${grew} bytes`);
  assert.deepEqual(findings.slice(0, 10), []);
  assert.ok(tally.decoded > INPUTS / 50 && tally.comparedWithReference > INPUTS / 50, JSON.stringify(tally)); // the loop reaches the pixels
});

function randomJson(r, depth = 0) {
  const k = Math.floor(r() * (depth > 2 ? 5 : 7));
  if (k === 0) return null;
  if (k === 1) return r() < 0.5;
  if (k === 2) return Math.floor((r() - 0.5) * 2 ** Math.floor(r() * 60));
  if (k === 3) return (r() - 0.5) * 1e6;
  if (k === 4) { // any UTF-16 code units, lone surrogates too (JSON.stringify escapes them)
    return String.fromCharCode(...Array.from({ length: Math.floor(r() * 12) }, () => Math.floor(r() * 65536)));
  }
  if (k === 5) return Array.from({ length: Math.floor(r() * 4) }, () => randomJson(r, depth + 1));
  const o = {};
  for (let i = Math.floor(r() * 5); i > 0; i--) o[randomJson(r, 3) + ""] = randomJson(r, depth + 1);
  return o;
}

test(`fuzz: the frame encoder and decoder on ${INPUTS} headers and ${INPUTS} mutated frames (seed ${SEED})`, () => {
  const r = rng(SEED + 1), findings = [], corpus = [];
  for (let i = 0; i < INPUTS; i++) { // encode -> decode is the identity; the layout is what Node's Buffer reads
    const header = randomJson(r, 1), obj = header && typeof header === "object" && !Array.isArray(header) ? header : { v: header };
    const payload = r() < 0.5 ? new Uint8Array(Math.floor(r() * 64)).map(() => Math.floor(r() * 256)) : new Uint16Array(Math.floor(r() * 32)).map(() => Math.floor(r() * 65536));
    const frame = pack(obj, payload);
    const buf = Buffer.from(frame), n = buf.readUInt32LE(0);
    const [h, p] = unpack(frame.buffer);
    if (n !== Buffer.byteLength(JSON.stringify(obj)) || JSON.stringify(JSON.parse(buf.toString("utf8", 4, 4 + n))) !== JSON.stringify(obj)) {
      findings.push(`header ${i}: the layout differs from Buffer's reading`);
    }
    if (JSON.stringify(h) !== JSON.stringify(obj) || Buffer.compare(Buffer.from(p), Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength))) {
      findings.push(`header ${i}: unpack(pack(x)) !== x`);
    }
    if (corpus.length < 50) corpus.push(frame);
  }
  for (const f of readdirSync(FIXTURES).filter((x) => /^frame\d+\.bin$/.test(x))) corpus.push(fixture(f));
  const tally = { unpacked: 0, refused: 0 };
  for (let i = 0; i < INPUTS; i++) { // mutated frames: a result that Buffer's reading agrees with, or a FrameError
    let b = corpus[Math.floor(r() * corpus.length)].slice();
    const m = Math.floor(r() * 4);
    if (m === 0) for (let k = 1 + Math.floor(r() * 6); k > 0; k--) b[Math.floor(r() * b.length)] ^= 1 << Math.floor(r() * 8);
    else if (m === 1) b = b.subarray(0, Math.floor(r() * (b.length + 1)));
    else if (m === 2 && b.length >= 4) new DataView(b.buffer, b.byteOffset).setUint32(0, [0, 1, b.length - 4, b.length - 3, 0xffffffff, Math.floor(r() * 2 ** 32)][Math.floor(r() * 6)], true);
    else if (b.length >= 4) { // the header text itself: a byte changed
      const n = Math.min(new DataView(b.buffer, b.byteOffset).getUint32(0, true), b.length - 4);
      if (n > 0) b[4 + Math.floor(r() * n)] = Math.floor(r() * 256);
    }
    try {
      const [h, p] = unpack(b);
      tally.unpacked++;
      const buf = Buffer.from(b), n = buf.readUInt32LE(0);
      if (JSON.stringify(h) !== JSON.stringify(JSON.parse(buf.toString("utf8", 4, 4 + n))) || p.length !== b.length - 4 - n) {
        findings.push(`frame ${i}: unpack disagrees with Buffer's reading`);
      }
    } catch (err) {
      if (!(err instanceof FrameError)) findings.push(`frame ${i}: ${err.name}: ${err.message}`);
      else tally.refused++;
    }
  }
  process.stderr.write(`fuzz frames: ${INPUTS} encoded + ${INPUTS} mutated, seed ${SEED}: ${JSON.stringify(tally)}\n`);
  assert.deepEqual(findings.slice(0, 10), []);
  assert.ok(tally.unpacked > INPUTS / 20 && tally.refused > INPUTS / 20, JSON.stringify(tally));
});
