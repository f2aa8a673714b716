// A decoded label PNG -> the model's ids, in the page (browser mode): the server's rules (spade_rt/labels.py,
// POST /v1/labels?resize=true): one channel holds ids as stored (a palette PNG's indices), RGB/RGBA holds the
// model's palette colours; then Pillow's NEAREST resize to the model's size, 255 -> the don't-care id.

/** Pillow's NEAREST (ImagingScaleAffine): accumulated source coordinates; src (w x h) -> Int32Array (W x H). */
export function resizeNearest(src, w, h, W, H) {
  const out = new Int32Array(W * H), xs = new Int32Array(W);
  const ax = w / W, ay = h / H;
  let xo = ax * 0.5;
  for (let x = 0; x < W; x++) { xs[x] = Math.min(w - 1, Math.trunc(xo)); xo += ax; }
  let yo = ay * 0.5;
  for (let y = 0; y < H; y++) {
    const sy = Math.min(h - 1, Math.trunc(yo)) * w;
    for (let x = 0; x < W; x++) out[y * W + x] = src[sy + xs[x]];
    yo += ay;
  }
  return out;
}

/** The ids stored in a decoded PNG (decodePng's result), before resizing: Int32Array, -1 for unknown colours. */
function storedIds(p, info) {
  const n = p.W * p.H, stored = new Int32Array(n);
  if (p.type === 0 || p.type === 3) { // one channel: ids as stored (a palette PNG's indices)
    if (p.type === 0 && p.depth < 8) throw new Error(`a ${p.depth}-bit grey PNG: expected 8 or 16 bits of ids`);
    for (let i = 0; i < n; i++) stored[i] = p.data[i];
    return stored;
  }
  if (p.type !== 2 && p.type !== 6) {
    throw new Error("has 2 channels (grey + alpha): expected one channel of ids or the palette's colours");
  }
  if (!info.palette) throw new Error(`has ${p.channels} channels: expected one channel of ids (this model has no palette)`);
  const byColour = new Map();
  for (const c of info.classes) byColour.set(parseInt(c.colour.slice(1), 16), c.id);
  const shift = p.depth === 16 ? 8 : 0, d = p.data;
  let unknown = 0;
  for (let i = 0; i < n; i++) { // colours of the model's palette (16-bit: the high byte, as Pillow reads it)
    const k = i * p.channels;
    const id = byColour.get(((d[k] >> shift) << 16) | ((d[k + 1] >> shift) << 8) | (d[k + 2] >> shift));
    if (id === undefined) unknown++;
    stored[i] = id === undefined ? -1 : id;
  }
  if (unknown) throw new Error(`${unknown} pixels have colours outside the ${info.palette} palette`);
  return stored;
}

/** A decoded label PNG -> IdArray (W x H) of the model's ids; Error (one line) when it holds no valid ids. */
export function labelIds(p, info, W, H, IdArray) {
  const ids = resizeNearest(storedIds(p, info), p.W, p.H, W, H), out = new IdArray(W * H), dc = info.dontcare_id;
  let bad = 0;
  for (let i = 0; i < ids.length; i++) {
    const v = ids[i] === 255 && dc !== null && dc !== undefined ? dc : ids[i];
    if (v < 0 || v >= info.num_ids) bad++;
    out[i] = v;
  }
  if (bad) throw new Error(`${bad} pixels hold ids outside 0..${info.num_ids - 1}`);
  return out;
}
