// The painter's wire protocol (spade_rt/serve/inputs.py is the server's side): one WebSocket message per
// frame, u32 little-endian header length n, n bytes of UTF-8 JSON (an object), then the payload.
// Client -> server: {frame, seed, height, width, dtype} + the ids (H*W, uint8 or uint16 LE);
// server -> client: {frame, batch, queue_ms, compute_ms, server_ms, replaced, format} + a PNG, or
// {frame, error, status} and no payload. Also the reconnect policy: how long a refused painter waits.

export const SEED_MAX_FALLBACK = 4294967295; // when /v1/model names no seed range: the server's MAX_SEED (2^32 - 1)

/** A malformed frame: what unpack() throws, and nothing else. */
export class FrameError extends Error {
  constructor(message) {
    super(message);
    this.name = "FrameError";
  }
}

/** header (a JSON object) + payload (a typed array) -> one message; a copy: later edits never touch a sent frame. */
export function pack(header, payload) {
  const head = new TextEncoder().encode(JSON.stringify(header));
  const bytes = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  const out = new Uint8Array(4 + head.length + bytes.length);
  new DataView(out.buffer).setUint32(0, head.length, true);
  out.set(head, 4);
  out.set(bytes, 4 + head.length);
  return out;
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

/** One message (ArrayBuffer or Uint8Array) -> [header object, payload view]; FrameError when malformed. */
export function unpack(message) {
  const b = message instanceof Uint8Array ? message : new Uint8Array(message);
  if (b.length < 4) throw new FrameError(`a frame of ${b.length} bytes: expected at least 4 (the header length)`);
  const n = new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0, true);
  if (n > b.length - 4) throw new FrameError(`a header of ${n} bytes in a frame of ${b.length}: expected at most ${b.length - 4}`);
  let header;
  try {
    header = JSON.parse(UTF8.decode(b.subarray(4, 4 + n)));
  } catch (err) {
    throw new FrameError(`the frame header is not UTF-8 JSON (${err.message})`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    throw new FrameError("the frame header is not a JSON object");
  }
  return [header, b.subarray(4 + n)];
}

/** [lowest, highest] seed the model takes: /v1/model's "seed" {min, max} or "max_seed" if given, else 0..2^32-1. */
export function seedRange(info) {
  const s = (info && info.seed) || {};
  const hi = Number.isSafeInteger(s.max) ? s.max : Number.isSafeInteger(info && info.max_seed) ? info.max_seed : SEED_MAX_FALLBACK;
  const lo = Number.isSafeInteger(s.min) ? s.min : 0;
  return [lo, hi];
}

/** The seed box's text -> the seed sent; anything outside the range (or not an integer) sends 0, as before. */
export function parseSeed(text, [lo, hi] = [0, SEED_MAX_FALLBACK]) {
  const v = Number(text);
  return Number.isInteger(v) && v >= lo && v <= hi ? v : lo;
}

export const RETRY_FIRST_MS = 250; // a lost connection: 250 ms, then doubling ...
export const RETRY_CAP_MS = 5000; // ... up to 5 s
export const BUSY_CAP_MS = 30000; // a refusal (503): at most 30 s between tries, unless Retry-After asks for more

/**
 * Milliseconds before reconnect attempt `attempt` (0 for the first after a failure). retryAfterS: the
 * server's Retry-After in seconds when it refused us (503), else null. Never sooner than Retry-After; the
 * exponential step and up to +50 % jitter (random() in [0, 1): painters refused together spread out) on top,
 * capped at BUSY_CAP_MS for a refusal (RETRY_CAP_MS for a lost connection), but never under Retry-After.
 */
export function retryDelay(attempt, retryAfterS = null, random = Math.random) {
  const step = RETRY_FIRST_MS * 2 ** Math.min(Math.max(0, attempt), 16);
  const busy = Number.isFinite(retryAfterS) && retryAfterS >= 0;
  const floor = busy ? retryAfterS * 1000 : 0;
  const wait = Math.max(floor, step) * (1 + 0.5 * random());
  return Math.round(Math.max(floor, Math.min(busy ? BUSY_CAP_MS : RETRY_CAP_MS, wait)));
}

/** A Retry-After header value -> seconds (delta-seconds or an HTTP date), null when absent or unreadable. */
export function parseRetryAfter(value, now = Date.now()) {
  if (value === null || value === undefined || value === "") return null;
  if (/^\s*\d+\s*$/.test(value)) return Number(value);
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, (at - now) / 1000);
}
