// The painter's PNG codec (spade_rt/serve/static/png.js) against PNGs whose pixels are known without it:
// written by Pillow (expected = Pillow reading them back) or by hand from arrays (fixtures/make_fixtures.py),
// and against pngjs on the same files; the label PNG the painter downloads, read back by pngjs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { PngError, crc32, decodePng, encodeLabelPng, pngChunk } from "../../spade_rt/serve/static/png.js";
import { FIXTURES, differsFromReference, fixture, referenceRead } from "./reference.mjs";

const CASES = readdirSync(FIXTURES).filter((f) => f.endsWith(".png") && !f.startsWith("refused-")).map((f) => f.slice(0, -4));

test("the fixtures cover palette, 16-bit, sub-8-bit, grey, grey + alpha, RGB and RGBA", () => {
  const kinds = new Set(CASES.map((n) => { const e = JSON.parse(readFileSync(`${FIXTURES}${n}.json`)); return `${e.type}/${e.depth}`; }));
  for (const k of ["0/1", "0/2", "0/4", "0/8", "0/16", "2/8", "2/16", "3/1", "3/2", "3/4", "3/8", "4/8", "4/16", "6/8", "6/16"]) {
    assert.ok(kinds.has(k), `no fixture of colour type/depth ${k}`);
  }
});

for (const name of CASES) {
  test(`decodes ${name}.png to the pixels it holds`, async () => {
    const want = JSON.parse(readFileSync(`${FIXTURES}${name}.json`));
    const bytes = fixture(`${name}.png`);
    const got = await decodePng(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length), want.width * want.height);
    assert.deepEqual([got.W, got.H, got.type, got.depth, got.channels], [want.width, want.height, want.type, want.depth, want.channels]);
    assert.deepEqual(Array.from(got.data), want.data);
    assert.equal(got.data instanceof Uint16Array, want.depth === 16);
    assert.deepEqual(got.palette === null ? null : Array.from(got.palette), want.palette);
    assert.equal(differsFromReference(got, referenceRead(bytes)), null); // and pngjs agrees
  });
}

test("an interlaced PNG is refused with a message that says so", async () => {
  await assert.rejects(decodePng(fixture("refused-interlaced.png"), 1e6), { name: "PngError", message: /interlaced PNG: save it without interlacing/ });
});

test("an image over the pixel budget is refused before its data is inflated", async () => {
  const bytes = fixture("pillow-rgb.png"); // 13x7 = 91 pixels
  await assert.rejects(decodePng(bytes, 90), { name: "PngError", message: "13x7 (91 pixels): more than the 90 accepted" });
  const forged = bytes.slice(); // IHDR says 100000 x 100000, CRC made valid: refused by size, not by a failed allocation
  const dv = new DataView(forged.buffer);
  dv.setUint32(16, 100000); dv.setUint32(20, 100000);
  dv.setUint32(29, crc32(forged.subarray(12, 29)));
  await assert.rejects(decodePng(forged, 2048 * 1024), { name: "PngError", message: /100000x100000 \(10000000000 pixels\): more than the 2097152 accepted/ });
  await assert.rejects(decodePng(forged, Infinity), { name: "PngError", message: /bytes of image data for 100000x100000/ });
});

test("not a PNG, a cut-off PNG and a bad bit depth are PngErrors with one line", async () => {
  const rgb = fixture("pillow-rgb.png");
  await assert.rejects(decodePng(new TextEncoder().encode("GIF89a..........................................."), 1e6), { name: "PngError", message: /not a PNG/ });
  await assert.rejects(decodePng(rgb.subarray(0, rgb.length - 40), 1e6), { name: "PngError", message: /runs past the end/ });
  const bad = rgb.slice();
  bad[24] = 4; // 4-bit RGB does not exist
  await assert.rejects(decodePng(bad, 1e6), { name: "PngError", message: "a damaged PNG (4-bit RGB: expected 8, 16 bits)" });
  for (const err of [PngError]) assert.equal(new err("x").name, "PngError");
});

test("the label map download: pngjs reads back the ids, 8-bit and 16-bit", async () => {
  for (const [wide, W, H, top] of [[false, 37, 300, 256], [true, 301, 230, 65536]]) { // 16-bit: over 65535 bytes (two stored blocks)
    const ids = wide ? new Uint16Array(W * H) : new Uint8Array(W * H);
    for (let i = 0; i < ids.length; i++) ids[i] = (i * 7919) % top;
    const png = encodeLabelPng(ids, W, H, wide);
    const ref = referenceRead(png);
    assert.ok(ref, "pngjs refuses the painter's label PNG");
    assert.deepEqual([ref.width, ref.height], [W, H]);
    for (let i = 0; i < ids.length; i++) assert.equal(ref.data[4 * i], ids[i]);
    const back = await decodePng(png, Infinity);
    assert.deepEqual(Array.from(back.data), Array.from(ids));
    assert.deepEqual([back.type, back.depth], [0, wide ? 16 : 8]);
  }
});

test("chunk CRCs are zlib's CRC-32", () => {
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926); // the CRC-32 check value
  const c = pngChunk("IEND", new Uint8Array(0));
  assert.deepEqual(Array.from(c), [0, 0, 0, 0, 73, 69, 78, 68, 0xae, 0x42, 0x60, 0x82]);
});
