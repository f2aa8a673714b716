// The PNG codec of the painter: decodePng reads label PNGs in browser mode (the server's rules,
// spade_rt/labels.py, are applied by labels.js) and the server's pictures; encodeLabelPng writes the label
// map as a one-channel PNG of ids. Untrusted input: every failure is a PngError with one line, the image size
// is checked against a pixel budget before anything is inflated, and inflating stops at the size the header
// justifies (a small file never becomes a large allocation). Plain ES module: browsers and Node 20 alike
// (DecompressionStream, Blob, Response are globals in both). Tested in web/test/png.test.js, fuzzed in
// web/test/fuzz.test.js.

/** A PNG this decoder cannot read: the message says why, in one line. */
export class PngError extends Error {
  constructor(message) {
    super(message);
    this.name = "PngError";
  }
}

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
// colour type -> channels, and the bit depths the PNG spec allows for it
const COLOUR_TYPES = {
  0: { channels: 1, depths: [1, 2, 4, 8, 16], name: "grey" },
  2: { channels: 3, depths: [8, 16], name: "RGB" },
  3: { channels: 1, depths: [1, 2, 4, 8], name: "palette" },
  4: { channels: 2, depths: [8, 16], name: "grey + alpha" },
  6: { channels: 4, depths: [8, 16], name: "RGBA" },
};

/** zlib data (the IDAT chunks) -> the first `expected` bytes it inflates to; a PngError when damaged or short. */
async function inflate(parts, expected) {
  const reader = new Blob(parts).stream().pipeThrough(new DecompressionStream("deflate")).getReader();
  const out = new Uint8Array(expected);
  let filled = 0;
  try {
    while (filled < expected) {
      const { done, value } = await reader.read();
      if (done) break;
      const take = Math.min(value.length, expected - filled);
      out.set(value.subarray(0, take), filled);
      filled += take;
    }
  } catch (err) {
    throw new PngError(`a damaged PNG (image data: ${err.message})`);
  } finally {
    reader.cancel().catch(() => {}); // enough read: the rest (if any) is never inflated
  }
  if (filled < expected) throw new PngError(`a damaged PNG (image data too short: ${filled} of ${expected} bytes)`);
  return out;
}

function unfilter(raw, H, stride, bpp) { // PNG filters 0-4 per row -> the scanlines without filter bytes
  const px = new Uint8Array(H * stride);
  for (let y = 0; y < H; y++) {
    const f = raw[y * (stride + 1)], src = y * (stride + 1) + 1, row = y * stride, prev = row - stride;
    if (f > 4) throw new PngError(`a damaged PNG (filter ${f} on row ${y}: expected 0..4)`);
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? px[row + i - bpp] : 0, up = y ? px[prev + i] : 0, c = y && i >= bpp ? px[prev + i - bpp] : 0;
      let v = raw[src + i];
      if (f === 1) v += a;
      else if (f === 2) v += up;
      else if (f === 3) v += (a + up) >> 1;
      else if (f === 4) {
        const p = a + up - c, pa = Math.abs(p - a), pb = Math.abs(p - up), pc = Math.abs(p - c);
        v += pa <= pb && pa <= pc ? a : pb <= pc ? up : c;
      }
      px[row + i] = v & 255;
    }
  }
  return px;
}

function samples(px, W, H, channels, depth, stride) { // scanlines -> one number per sample (16-bit: big-endian)
  const n = W * H * channels, data = depth === 16 ? new Uint16Array(n) : new Uint8Array(n), perRow = W * channels;
  for (let y = 0; y < H; y++) {
    const at = y * stride, to = y * perRow;
    if (depth === 8) data.set(px.subarray(at, at + perRow), to);
    else if (depth === 16) for (let k = 0; k < perRow; k++) data[to + k] = (px[at + 2 * k] << 8) | px[at + 2 * k + 1];
    else {
      const mask = (1 << depth) - 1;
      for (let k = 0; k < perRow; k++) {
        const bit = k * depth;
        data[to + k] = (px[at + (bit >> 3)] >> (8 - depth - (bit & 7))) & mask;
      }
    }
  }
  return data;
}

/**
 * A PNG (ArrayBuffer or Uint8Array) -> {W, H, type, depth, channels, data, palette}: data holds the samples
 * as stored (palette indices for type 3, no scaling of 1/2/4-bit grey, Uint16Array for 16 bits), palette the
 * PLTE bytes (RGB triples) or null. Refuses (PngError) more than maxPixels pixels before inflating anything,
 * and interlaced PNGs. Chunk CRCs are not checked (as browsers do); ancillary chunks are skipped.
 */
export async function decodePng(buffer, maxPixels) {
  const b = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (b.length < 33 || SIGNATURE.some((v, i) => b[i] !== v)) throw new PngError("not a PNG (only PNG is read as a label map)");
  let o = 8, W = 0, H = 0, depth = 0, type = -1, interlace = 0, palette = null, seenHeader = false, idatBytes = 0;
  const idat = [];
  while (o + 12 <= b.length) {
    const n = dv.getUint32(o), t = String.fromCharCode(b[o + 4], b[o + 5], b[o + 6], b[o + 7]);
    if (o + 12 + n > b.length) throw new PngError(`a damaged PNG (chunk ${JSON.stringify(t)} of ${n} bytes runs past the end)`);
    if ((t === "IHDR" && seenHeader) || (t === "PLTE" && palette !== null)) {
      throw new PngError(`a damaged PNG (a second ${t} chunk: expected one)`); // which one counts would be a guess
    }
    if (t === "IHDR") {
      if (n < 13) throw new PngError(`a damaged PNG (an IHDR of ${n} bytes: expected 13)`);
      W = dv.getUint32(o + 8); H = dv.getUint32(o + 12); depth = b[o + 16]; type = b[o + 17]; interlace = b[o + 20];
      seenHeader = true;
      if (W * H > maxPixels) throw new PngError(`${W}x${H} (${W * H} pixels): more than the ${maxPixels} accepted`);
    } else if (t === "PLTE") palette = b.subarray(o + 8, o + 8 + n);
    else if (t === "IDAT") { idat.push(b.subarray(o + 8, o + 8 + n)); idatBytes += n; }
    else if (t === "IEND") break;
    o += 12 + n;
  }
  const kind = COLOUR_TYPES[type];
  if (!seenHeader || !W || !H || !idat.length) throw new PngError("a damaged PNG (no header, an empty image or no image data)");
  if (!kind) throw new PngError(`a damaged PNG (colour type ${type}: expected 0, 2, 3, 4 or 6)`);
  if (!kind.depths.includes(depth)) {
    throw new PngError(`a damaged PNG (${depth}-bit ${kind.name}: expected ${kind.depths.join(", ")} bits)`);
  }
  if (interlace === 1) throw new PngError("an interlaced PNG: save it without interlacing");
  if (interlace !== 0) throw new PngError(`a damaged PNG (interlace method ${interlace}: expected 0)`);
  const channels = kind.channels, bits = channels * depth;
  const stride = Math.ceil((W * bits) / 8), bpp = Math.max(1, bits >> 3), expected = H * (stride + 1);
  // deflate expands at most 1032:1: fewer IDAT bytes than that cannot hold the image (refused before allocating it)
  if (idatBytes * 1032 + 64 < expected) throw new PngError(`a damaged PNG (${idatBytes} bytes of image data for ${W}x${H})`);
  const raw = await inflate(idat, expected);
  const data = samples(unfilter(raw, H, stride, bpp), W, H, channels, depth, stride);
  return { W, H, type, depth, channels, data, palette };
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (PNG, zlib) of bytes. */
export function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** One chunk: length, type, data, CRC of type + data. */
export function pngChunk(type, data) {
  const out = new Uint8Array(12 + data.length), dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  dv.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

function storedZlib(raw) { // zlib with stored (uncompressed) deflate blocks of at most 65535 bytes
  const blocks = Math.max(1, Math.ceil(raw.length / 65535));
  const z = new Uint8Array(2 + raw.length + 5 * blocks + 4);
  z[0] = 0x78; z[1] = 0x01;
  let o = 2;
  for (let k = 0; k < blocks; k++) {
    const part = raw.subarray(k * 65535, Math.min(raw.length, (k + 1) * 65535));
    z[o++] = k === blocks - 1 ? 1 : 0;
    z[o++] = part.length & 255; z[o++] = part.length >> 8;
    z[o++] = ~part.length & 255; z[o++] = (~part.length >> 8) & 255;
    z.set(part, o);
    o += part.length;
  }
  let a = 1, s = 0; // Adler-32
  for (let i = 0; i < raw.length; i++) { a = (a + raw[i]) % 65521; s = (s + a) % 65521; }
  new DataView(z.buffer).setUint32(o, ((s << 16) | a) >>> 0);
  return z;
}

/** The id map (W x H, row-major) as a one-channel PNG: 8-bit grey, 16-bit when wide (past 256 classes). */
export function encodeLabelPng(ids, W, H, wide) {
  const row = 1 + W * (wide ? 2 : 1), raw = new Uint8Array(H * row); // filter byte 0 on every row
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const v = ids[y * W + x], o = y * row + 1 + x * (wide ? 2 : 1);
      if (wide) { raw[o] = v >> 8; raw[o + 1] = v & 255; } else raw[o] = v;
    }
  }
  const ihdr = new Uint8Array(13), dv = new DataView(ihdr.buffer);
  dv.setUint32(0, W); dv.setUint32(4, H);
  ihdr[8] = wide ? 16 : 8; // bit depth; colour type 0 (grey), deflate, no filter, no interlace
  const parts = [new Uint8Array(SIGNATURE), pngChunk("IHDR", ihdr), pngChunk("IDAT", storedZlib(raw)), pngChunk("IEND", new Uint8Array(0))];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}
