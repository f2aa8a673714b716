// The painter's wire protocol (spade_rt/serve/static/protocol.js): frames the server packed
// (fixtures/frames.json, made by spade_rt.serve.inputs.pack) are read back exactly; frames the painter packs
// have the documented layout; malformed frames are FrameErrors; the reconnect policy honours Retry-After.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  BUSY_CAP_MS, FrameError, RETRY_CAP_MS, SEED_MAX_FALLBACK, pack, parseRetryAfter, parseSeed, retryDelay, seedRange, unpack,
} from "../../spade_rt/serve/static/protocol.js";
import { FIXTURES, fixture } from "./reference.mjs";

test("frames packed by the server are unpacked to their header and payload", () => {
  for (const f of JSON.parse(readFileSync(`${FIXTURES}frames.json`))) {
    const bytes = fixture(f.file);
    const [header, payload] = unpack(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    assert.deepEqual(header, f.header);
    assert.deepEqual(Array.from(payload), f.payload);
  }
});

test("a packed frame: u32 little-endian header length, UTF-8 JSON, the ids; a copy of them", () => {
  const ids = new Uint16Array([1, 258, 65535]);
  const header = { frame: 3, seed: 12, height: 1, width: 3, dtype: "uint16", note: "é" };
  const out = pack(header, ids);
  const json = new TextEncoder().encode(JSON.stringify(header));
  assert.deepEqual(Array.from(out.subarray(0, 4)), [json.length & 255, json.length >> 8, 0, 0]);
  assert.deepEqual(Array.from(out.subarray(4, 4 + json.length)), Array.from(json));
  assert.deepEqual(Array.from(out.subarray(4 + json.length)), [1, 0, 2, 1, 255, 255]); // little-endian ids
  ids[0] = 9; // later edits never touch a sent frame
  assert.equal(out[4 + json.length], 1);
  const [h, p] = unpack(out);
  assert.deepEqual(h, header);
  assert.deepEqual(Array.from(new Uint16Array(p.slice().buffer)), [1, 258, 65535]);
  const view = new Uint8Array(10).subarray(2, 5); // a view into a larger buffer: only its bytes
  view.set([7, 8, 9]);
  assert.deepEqual(Array.from(unpack(pack({}, view))[1]), [7, 8, 9]);
});

test("malformed frames are FrameErrors that say what was expected", () => {
  const cases = [
    [new Uint8Array([1, 0]), /a frame of 2 bytes: expected at least 4/],
    [new Uint8Array([9, 0, 0, 0, 123, 125]), /a header of 9 bytes in a frame of 6: expected at most 2/],
    [new Uint8Array([255, 255, 255, 255]), /a header of 4294967295 bytes/],
    [new Uint8Array([2, 0, 0, 0, 123, 0]), /not UTF-8 JSON/],
    [new Uint8Array([2, 0, 0, 0, 0xc3, 0x28]), /not UTF-8 JSON/],
    [new Uint8Array([4, 0, 0, 0, 110, 117, 108, 108]), /not a JSON object/], // null
    [new Uint8Array([2, 0, 0, 0, 91, 93]), /not a JSON object/], // []
  ];
  for (const [bytes, message] of cases) assert.throws(() => unpack(bytes), (err) => err instanceof FrameError && message.test(err.message));
});

test("the seed range comes from /v1/model when it names one, else 0..2^32-1", () => {
  assert.deepEqual(seedRange({}), [0, SEED_MAX_FALLBACK]);
  assert.deepEqual(seedRange({ seed: { min: 0, max: 1000 } }), [0, 1000]);
  assert.deepEqual(seedRange({ max_seed: 77 }), [0, 77]);
  assert.deepEqual(seedRange({ seed: { max: "9" } }), [0, SEED_MAX_FALLBACK]); // not an integer: the fallback
  assert.equal(parseSeed("4294967295"), 4294967295);
  assert.equal(parseSeed("4294967296"), 0);
  assert.equal(parseSeed("1001", [0, 1000]), 0);
  assert.equal(parseSeed("1000", [0, 1000]), 1000);
  for (const bad of ["-1", "1.5", "abc", ""]) assert.equal(parseSeed(bad), 0);
});

test("a refused painter waits at least Retry-After, backs off, spreads out, and is capped", () => {
  const low = () => 0, high = () => 0.999999;
  assert.equal(retryDelay(0, 3, low), 3000); // honours Retry-After exactly at no jitter
  assert.ok(retryDelay(0, 3, high) > 4400 && retryDelay(0, 3, high) <= 4500); // + up to 50 % jitter
  assert.equal(retryDelay(5, 1, low), 8000); // backoff past Retry-After: 250 ms * 2^5
  assert.equal(retryDelay(30, 1, high), BUSY_CAP_MS); // capped ...
  assert.equal(retryDelay(30, 120, high), 120000); // ... but never under what the server asked for
  assert.equal(retryDelay(0, null, low), 250); // a lost connection: 250 ms doubling to 5 s, as before
  assert.equal(retryDelay(3, null, low), 2000);
  assert.equal(retryDelay(10, null, high), RETRY_CAP_MS);
  const spread = new Set(Array.from({ length: 50 }, () => retryDelay(0, 1))); // Math.random: painters spread out
  assert.ok(spread.size > 10, `${spread.size} distinct delays of 50`);
  assert.equal(parseRetryAfter("7"), 7);
  assert.equal(parseRetryAfter(null), null);
  assert.equal(parseRetryAfter("soon"), null);
  assert.equal(parseRetryAfter(new Date(10_000 + 4000).toUTCString(), 10_000), 4);
});
