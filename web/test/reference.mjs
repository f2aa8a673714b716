// The tests' independent reference decoder: pngjs (a devDependency pinned by web/package-lock.json), and the
// one conversion needed to compare with it: the painter's decodePng keeps samples as stored, pngjs expands
// every PNG to RGBA (skipRescale: samples keep their bit depth; palette -> the PLTE colours).
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const { PNG } = require("pngjs");

export const FIXTURES = fileURLToPath(new URL("./fixtures/", import.meta.url));

export function fixture(name) {
  return new Uint8Array(readFileSync(FIXTURES + name));
}

/** pngjs's reading of bytes -> {width, height, data (RGBA samples)}, or null when pngjs refuses them. */
export function referenceRead(bytes, checkCRC = true) {
  try {
    const p = PNG.sync.read(Buffer.from(bytes), { skipRescale: true, checkCRC });
    return { width: p.width, height: p.height, data: p.data };
  } catch (_) {
    return null;
  }
}

/**
 * decodePng's result vs pngjs's RGBA: the first difference as a string, or null when they agree. Palette
 * pixels compare their colour (RGB) when the index is inside PLTE (alpha may come from tRNS, which the
 * painter does not read: ids are indices); indices past PLTE have no colour to compare.
 */
export function differsFromReference(ours, ref) {
  if (ours.W !== ref.width || ours.H !== ref.height) return `size ${ours.W}x${ours.H} vs ${ref.width}x${ref.height}`;
  const max = (1 << ours.depth) - 1, d = ours.data, c = ours.channels;
  for (let i = 0; i < ours.W * ours.H; i++) {
    let want;
    const k = i * c;
    if (ours.type === 0) want = [d[k], d[k], d[k], max];
    else if (ours.type === 2) want = [d[k], d[k + 1], d[k + 2], max];
    else if (ours.type === 4) want = [d[k], d[k], d[k], d[k + 1]];
    else if (ours.type === 6) want = [d[k], d[k + 1], d[k + 2], d[k + 3]];
    else {
      const p = ours.palette, j = 3 * d[k];
      if (!p || j + 2 >= p.length) continue;
      want = [p[j], p[j + 1], p[j + 2]];
    }
    for (let s = 0; s < want.length; s++) {
      if (ref.data[4 * i + s] !== want[s]) return `pixel ${i} sample ${s}: ${want[s]} vs pngjs ${ref.data[4 * i + s]}`;
    }
  }
  return null;
}

/** A seeded uniform [0, 1) generator (mulberry32): the same inputs on every run of a test. */
export function rng(seed) { // mulberry32
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
