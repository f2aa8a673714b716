// spade-rt painter: paint a label map, watch the model's picture follow. ES modules, no build step:
// labelmap.js (painting, undo), protocol.js (frames, seed, reconnect policy), png.js (PNG codec), labels.js
// (a label PNG -> ids), runtime.js (onnxruntime-web); this module wires them to the page.
//
// The label map is an integer id buffer (Uint8Array, Uint16Array past 256 classes). Brush, fill, undo and
// loads all write ids into it; the canvas only shows it (putImageData of palette colours, never read back),
// so what is sent is exactly what was painted. Frames go over one WebSocket as the map changes: the server
// computes one and keeps one waiting, which any newer frame replaces (latest wins, nothing queues; replaced
// frames get no reply), so the newest map is computed next instead of a stale one. At most MAX_IN_FLIGHT go
// unanswered (a bound on the bytes on the wire during a long compute); past it, edits only mark the map dirty
// and the newest map goes out when a reply comes. The picture is decoded once (png.js), drawn into a canvas.
//
// Browser mode (the "compute" switch, or ?runtime=browser): the same id buffer goes to onnxruntime-web in
// this page instead, one frame in flight, the newest map next. Label PNGs are then decoded here too, so the
// server computes nothing. A static site (`spade-rt web`, <body data-site="static">) has browser mode only.
// A refused painter (503 on the WebSocket handshake: the server is full) waits as the server's Retry-After
// asks, with backoff and jitter, and says so. window.spadeRt.last holds the last frame: {ids, width, height,
// rgb, runtime, backend, ms}.
import { History, fill, line, stamp } from "./labelmap.js";
import { labelIds } from "./labels.js";
import { decodePng, encodeLabelPng } from "./png.js";
import { pack, parseRetryAfter, parseSeed, retryDelay, seedRange, unpack } from "./protocol.js";
import { loadBrowserRuntime, seededNormal, toRgb } from "./runtime.js";

const MAX_IN_FLIGHT = 8; // server mode: frames sent and not answered (computing, waiting, replaced on the way)
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const STATIC_SITE = document.body.dataset.site === "static";
const URLS = STATIC_SITE
  ? { model: "model.json", graph: "graph.onnx", ort: "ort/", examples: "examples.bin" }
  : { model: "/v1/model", graph: "/v1/graph", ort: "/ort/", painterSlot: "/ws" };
const B = { session: null, loading: null, backend: null, threads: 1, ort: null, output: null, examples: null };

const S = {
  info: null, W: 0, H: 0, IdArray: Uint8Array, dtype: "uint8", ids: null, lut: null,
  current: 0, tool: "brush", radius: 4, history: new History(), drawing: false, last: null,
  ws: null, attempt: 0, frame: 0, inFlight: 0, dirty: false, sentAt: new Map(), shownFrame: 0,
  lastSent: -1, lastReply: -1, picture: null, exampleSeed: 0, image: null, pictureImage: null,
  runtime: "server", wsWanted: false, sentIds: new Map(), seeds: [0, 4294967295], retryTimer: null,
};
const spadeRt = (window.spadeRt = { last: null });
const canvas = $("labels");
const ctx = canvas.getContext("2d");
const picture = $("picture"); // a canvas: the decoded pixels are drawn, never decoded a second time
const pictureCtx = picture.getContext("2d");

function status(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

// ---- drawing into the id buffer -------------------------------------------------------------------
function toPixel(e) {
  const r = canvas.getBoundingClientRect();
  const x = Math.floor(((e.clientX - r.left) * S.W) / r.width);
  const y = Math.floor(((e.clientY - r.top) * S.H) / r.height);
  return { x: Math.min(S.W - 1, Math.max(0, x)), y: Math.min(S.H - 1, Math.max(0, y)) };
}

function render() {
  const u32 = new Uint32Array(S.image.data.buffer), ids = S.ids, lut = S.lut;
  for (let i = 0; i < ids.length; i++) u32[i] = lut[ids[i]];
  ctx.putImageData(S.image, 0, 0);
}

function buttons() {
  $("undo").disabled = !S.history.canUndo;
  $("redo").disabled = !S.history.canRedo;
  $("download-picture").disabled = S.picture === null;
}

function changed() {
  render();
  buttons();
  S.dirty = true;
  send();
}

function replace(ids) {
  S.history.remember(S.ids);
  S.ids.set(ids);
  changed();
}

function undo() { if (S.history.undo(S.ids)) changed(); }

function redo() { if (S.history.redo(S.ids)) changed(); }

canvas.addEventListener("pointerdown", (e) => {
  if (e.button !== 0 || !S.ids) return;
  e.preventDefault();
  const p = toPixel(e);
  if (S.tool === "fill") {
    const before = S.ids.slice();
    if (fill(S.ids, S.W, S.H, p.x, p.y, S.current)) {
      S.history.push(before);
      changed();
    }
    return;
  }
  canvas.setPointerCapture(e.pointerId);
  S.history.remember(S.ids);
  S.drawing = true;
  S.last = p;
  stamp(S.ids, S.W, S.H, p.x, p.y, S.radius, S.current);
  changed();
});
canvas.addEventListener("pointermove", (e) => {
  if (!S.drawing) return;
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
  for (const ev of events.length ? events : [e]) {
    const p = toPixel(ev);
    line(S.ids, S.W, S.H, S.last, p, S.radius, S.current);
    S.last = p;
  }
  changed();
});
const end = () => { S.drawing = false; };
canvas.addEventListener("pointerup", end);
canvas.addEventListener("pointercancel", end);

// ---- the picture --------------------------------------------------------------------------------------
function showPicture(samples, channels, frame) { // 8-bit RGB(A) samples -> the picture canvas
  const px = S.pictureImage.data, n = S.W * S.H;
  for (let i = 0, k = 0; i < n; i++, k += channels) {
    px[4 * i] = samples[k]; px[4 * i + 1] = samples[k + 1]; px[4 * i + 2] = samples[k + 2]; px[4 * i + 3] = 255;
  }
  pictureCtx.putImageData(S.pictureImage, 0, 0);
  picture.dataset.frame = String(frame);
}

function pictureBlob() { // the server's PNG as it came, or the canvas (browser mode: its pixels are exact)
  if (S.picture instanceof Blob) return Promise.resolve(S.picture);
  return new Promise((resolve) => picture.toBlob(resolve, "image/png"));
}

// ---- the live connection --------------------------------------------------------------------------
function seed() { return parseSeed($("seed").value, S.seeds); }

function send() {
  if (!S.dirty) return;
  if (S.runtime === "browser") {
    if (B.session && !S.inFlight) browserFrame();
    return;
  }
  if (S.inFlight >= MAX_IN_FLIGHT || !S.ws || S.ws.readyState !== WebSocket.OPEN) return;
  S.dirty = false;
  S.inFlight += 1;
  S.frame += 1;
  const header = { frame: S.frame, seed: seed(), height: S.H, width: S.W, dtype: S.dtype };
  S.sentAt.set(S.frame, performance.now());
  S.lastSent = S.frame;
  S.sentIds.set(S.frame, S.ids.slice());
  S.ws.send(pack(header, S.ids));
}

function settle(frame) { // a reply for `frame`: it and every older frame (replaced by the server) are done
  for (const f of [...S.sentAt.keys()]) {
    if (f <= frame) { S.sentAt.delete(f); S.sentIds.delete(f); }
  }
  S.inFlight = S.sentAt.size;
  S.lastReply = frame;
}

async function onReply(buffer) {
  let h, payload;
  try {
    [h, payload] = unpack(buffer);
  } catch (err) {
    status(`a reply the painter cannot read: ${err.message}`, true);
    return;
  }
  const sent = S.sentAt.get(h.frame), ids = S.sentIds.get(h.frame);
  settle(Number.isInteger(h.frame) ? h.frame : S.lastReply);
  if (h.error) {
    status(`frame ${h.frame}: ${h.error}`, true);
    send();
    return;
  }
  const rt = sent === undefined ? NaN : performance.now() - sent;
  send(); // the newest map goes out first: the server computes it while this picture is decoded and shown
  let p;
  try {
    p = await decodePng(payload, Infinity);
  } catch (err) {
    status(`frame ${h.frame}: cannot read the picture: ${err.message}`, true);
    return;
  }
  if (h.frame < S.shownFrame) return; // a newer picture came in while this one was decoded
  S.shownFrame = h.frame;
  spadeRt.last = { ids, width: p.W, height: p.H, rgb: p.data, runtime: "server", backend: S.info.backend, ms: rt };
  S.picture = new Blob([payload], { type: "image/png" });
  showPicture(p.data, p.channels, h.frame);
  $("latency").textContent =
    `· frame ${h.frame}: ${rt.toFixed(0)} ms (server ${h.server_ms.toFixed(0)} ms: ` +
    `compute ${h.compute_ms.toFixed(0)}, queue ${h.queue_ms.toFixed(0)}, batch ${h.batch})`;
  $("latency").dataset.ms = rt.toFixed(1);
  if ($("status").classList.contains("error")) status("");
  buttons();
}

function connection(text, error) {
  $("connection").textContent = text;
  $("connection").classList.toggle("error", error);
}

async function refusal() { // why the handshake failed: GET /ws says 503 + Retry-After while the server is full
  try {
    const res = await fetch(URLS.painterSlot, { cache: "no-store" });
    if (res.status !== 503) return null;
    let message = "";
    try { message = (await res.json()).error || ""; } catch (_) { /* not JSON */ }
    return { retryAfter: parseRetryAfter(res.headers.get("Retry-After")) ?? 1, message };
  } catch (_) {
    return null; // no answer: the server is gone, not busy
  }
}

function retryLater(busy) { // count down on the page, then connect again
  const delay = retryDelay(S.attempt++, busy ? busy.retryAfter : null);
  const until = performance.now() + delay;
  const tick = () => {
    if (!S.wsWanted) return;
    const left = Math.max(0, until - performance.now());
    if (left <= 0) { S.retryTimer = null; connect(); return; }
    const s = Math.ceil(left / 1000);
    if (busy) {
      connection(`server busy, retrying in ${s} s`, true);
      $("connection").title = busy.message;
    } else connection(`disconnected: reconnecting in ${s} s…`, true);
    S.retryTimer = setTimeout(tick, Math.min(left, left % 1000 || 1000));
  };
  tick();
}

function connect() {
  S.wsWanted = true;
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  S.ws = ws;
  let opened = false;
  ws.onopen = () => {
    opened = true;
    S.attempt = 0;
    connection("live", false);
    $("connection").title = "";
    S.sentAt.clear();
    S.sentIds.clear();
    S.inFlight = 0;
    S.dirty = true;
    send();
  };
  ws.onmessage = (ev) => onReply(ev.data);
  ws.onclose = async () => {
    if (!S.wsWanted || S.ws !== ws) return; // closed on purpose: browser mode
    S.sentAt.clear();
    S.sentIds.clear();
    S.inFlight = 0;
    connection("disconnected: reconnecting…", true);
    const busy = opened ? null : await refusal(); // browsers hide a refused handshake's status: ask
    if (!S.wsWanted || S.ws !== ws) return;
    retryLater(busy);
  };
}

// ---- browser mode: onnxruntime-web in this page ----------------------------------------------------
function runtimeNote() {
  let text = "";
  if (S.runtime === "browser" && B.session) {
    text = `this browser: ${B.backend === "webgpu" ? "WebGPU" : `WASM, ${B.threads} thread${B.threads === 1 ? "" : "s"}`}`;
    if (B.backend === "wasm" && !self.crossOriginIsolated) {
      text += " (one thread: this page is not cross-origin isolated; its host must send " +
        "Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp)";
    }
  } else if (S.runtime === "server") {
    text = `server: ${S.info.backend}`;
    const offer = S.info.browser || {};
    if (!offer.available) text += ` · browser mode unavailable: ${offer.reason}`;
  }
  $("runtime-note").textContent = text;
  $("runtime-note").dataset.backend = S.runtime === "browser" ? B.backend || "" : S.info.backend;
  $("runtime-note").dataset.threads = S.runtime === "browser" ? String(B.threads) : "";
}

async function browserFrame() {
  S.dirty = false;
  S.inFlight = 1;
  S.frame += 1;
  const frame = S.frame, ids = S.ids.slice(), ort = B.ort, shape = [1, S.H, S.W];
  S.lastSent = frame;
  try {
    const feeds = { labels: new ort.Tensor(S.dtype, ids, shape) };
    if (S.info.uses_instance) feeds.edges = new ort.Tensor("uint8", new Uint8Array(S.W * S.H), shape);
    if (S.info.use_vae) feeds.z = new ort.Tensor("float32", seededNormal(seed(), S.info.z_dim), [1, S.info.z_dim]);
    const t0 = performance.now();
    const out = await B.session.run(feeds);
    const ms = performance.now() - t0;
    const rgb = toRgb(out[B.output], S.W, S.H);
    spadeRt.last = { ids, width: S.W, height: S.H, rgb, runtime: "browser", backend: B.backend, ms };
    S.picture = "canvas";
    showPicture(rgb, 3, frame);
    const how = B.backend === "webgpu" ? "WebGPU" : `WASM, ${B.threads} thread${B.threads === 1 ? "" : "s"}`;
    $("latency").textContent = `· frame ${frame}: ${ms.toFixed(0)} ms in this browser (${how})`;
    $("latency").dataset.ms = ms.toFixed(1);
    if ($("status").classList.contains("error")) status("");
  } catch (err) {
    status(`frame ${frame}: ${err.message || err}`, true);
  }
  S.lastReply = frame;
  S.inFlight = 0;
  buttons();
  send();
}

function closeSocket() {
  S.wsWanted = false;
  if (S.retryTimer) clearTimeout(S.retryTimer);
  S.retryTimer = null;
  if (S.ws) S.ws.close();
  S.ws = null;
  connection(STATIC_SITE ? "static site" : "not connected: computing here", false);
}

async function setRuntime(mode) {
  $("runtime").value = mode;
  if (mode === "browser") {
    S.runtime = "browser";
    closeSocket();
    S.inFlight = 0;
    try {
      if (!B.loading) {
        B.loading = loadBrowserRuntime(S.info.browser || {}, URLS, params, (text) => status(text)).then((r) => {
          Object.assign(B, { session: r.session, ort: r.ort, backend: r.backend, threads: r.threads, output: r.output });
          status("");
        });
      }
      await B.loading;
    } catch (err) {
      B.loading = null;
      status(`browser mode: ${err.message || err}`, true);
      if (!STATIC_SITE) setRuntime("server");
      return;
    }
    if (S.runtime !== "browser") return; // switched back meanwhile
    runtimeNote();
    S.dirty = true;
    send();
  } else {
    S.runtime = "server";
    S.inFlight = 0;
    runtimeNote();
    if (!S.ws) connect();
  }
}

// ---- files --------------------------------------------------------------------------------------------
async function labelsHere(file) { // a label PNG -> the model's ids, in this page
  const maxPixels = (S.info.limits && S.info.limits.max_map_pixels) || 2048 * 1024;
  return labelIds(await decodePng(await file.arrayBuffer(), maxPixels), S.info, S.W, S.H, S.IdArray);
}

async function fetchIds(url, init) {
  const res = await fetch(url, init);
  if (!res.ok) {
    let message = `${res.status}`;
    try { message = (await res.json()).error; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  const ids = new S.IdArray(await res.arrayBuffer());
  if (ids.length !== S.W * S.H) throw new Error(`got ${ids.length} ids, expected ${S.W * S.H}`);
  return ids;
}

async function loadFile(file) {
  try {
    if (S.runtime === "browser") replace(await labelsHere(file));
    else replace(await fetchIds("/v1/labels?resize=true", { method: "POST", headers: { "Content-Type": "image/png" }, body: file }));
    status(`loaded ${file.name}`);
  } catch (err) {
    status(`${file.name}: ${err.message}`, true);
  }
}

async function exampleIds(seedValue) {
  if (!STATIC_SITE) return fetchIds(`/v1/example?seed=${seedValue}&format=ids`);
  if (!B.examples) { // `spade-rt web` wrote some scenes: examples.bin, one map of ids after another
    const res = await fetch(URLS.examples);
    if (!res.ok) throw new Error(`${res.status}`);
    B.examples = new S.IdArray(await res.arrayBuffer());
  }
  const count = Math.floor(B.examples.length / (S.W * S.H));
  const i = seedValue % count;
  return B.examples.slice(i * S.W * S.H, (i + 1) * S.W * S.H);
}

async function example(seedValue) {
  try {
    replace(await exampleIds(seedValue));
  } catch (err) {
    status(`example: ${err.message}`, true);
  }
}

function download(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

// ---- controls -----------------------------------------------------------------------------------------
function select(id) {
  S.current = id;
  for (const el of document.querySelectorAll(".swatch")) el.classList.toggle("selected", Number(el.dataset.id) === id);
}

function setRadius(r) {
  S.radius = Math.max(0, Math.min(32, r));
  $("size").value = String(S.radius);
  $("size-value").textContent = `${2 * S.radius + 1} px`;
}

function bind() {
  $("tool-brush").addEventListener("change", () => { S.tool = "brush"; });
  $("tool-fill").addEventListener("change", () => { S.tool = "fill"; });
  $("size").addEventListener("input", () => setRadius(Number($("size").value)));
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("clear").addEventListener("click", () => replace(new S.IdArray(S.W * S.H).fill(S.current)));
  $("example").addEventListener("click", () => example(++S.exampleSeed));
  $("seed").addEventListener("change", () => { S.dirty = true; send(); });
  $("random-z").addEventListener("click", () => {
    const [lo, hi] = S.seeds;
    $("seed").value = String(lo + (crypto.getRandomValues(new Uint32Array(1))[0] % (hi - lo + 1)));
    S.dirty = true;
    send();
  });
  $("load").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) loadFile(file);
    e.target.value = "";
  });
  $("download-picture").addEventListener("click", async () => {
    if (S.picture !== null) download(await pictureBlob(), `spade-rt-picture-${S.lastReply}.png`);
  });
  $("download-labels").addEventListener("click", () => {
    const png = encodeLabelPng(S.ids, S.W, S.H, S.dtype === "uint16");
    download(new Blob([png], { type: "image/png" }), "spade-rt-labels.png");
  });
  $("class-filter").addEventListener("input", (e) => {
    const q = e.target.value.toLowerCase();
    for (const el of document.querySelectorAll(".swatch")) el.hidden = q !== "" && !el.dataset.name.includes(q);
  });
  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement && e.target.type !== "range") return;
    const key = e.key.toLowerCase();
    if ((e.ctrlKey || e.metaKey) && key === "z") { e.preventDefault(); (e.shiftKey ? redo : undo)(); }
    else if ((e.ctrlKey || e.metaKey) && key === "y") { e.preventDefault(); redo(); }
    else if (key === "[") setRadius(S.radius - 1);
    else if (key === "]") setRadius(S.radius + 1);
  });
}

function describe(info) { // the header line, the palette and the style box from /v1/model
  $("model-info").textContent =
    `${info.model} · ${info.preset} · ${info.width}x${info.height} · ${info.num_ids} classes · ${info.backend}`;
  if (typeof info.tier === "string" && info.tier) {
    $("model-info").textContent += ` · tier ${info.tier}`;
    $("model-info").dataset.tier = info.tier;
  }
  const palette = $("palette");
  for (const c of info.classes) {
    const r = parseInt(c.colour.slice(1, 3), 16), g = parseInt(c.colour.slice(3, 5), 16), b = parseInt(c.colour.slice(5, 7), 16);
    S.lut[c.id] = ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0; // RGBA bytes, little-endian
    const el = document.createElement("button");
    el.className = "swatch";
    el.dataset.id = String(c.id);
    el.dataset.name = c.name.toLowerCase();
    el.innerHTML = `<i style="background:${c.colour}"></i><span></span><small>${c.id}</small>`;
    el.querySelector("span").textContent = c.name;
    el.addEventListener("click", () => select(c.id));
    palette.appendChild(el);
  }
  S.seeds = seedRange(info);
  $("seed").min = String(S.seeds[0]);
  $("seed").max = String(S.seeds[1]);
  if (!info.use_vae) {
    $("seed").disabled = true;
    $("random-z").disabled = true;
    $("style-note").textContent = "This model has no style input: the picture depends on the label map only.";
  } else {
    $("style-note").textContent = `VAE model: the seed draws its style vector z (${info.z_dim} values).`;
  }
}

async function init() {
  const res = await fetch(URLS.model);
  const info = (S.info = await res.json());
  S.W = info.width;
  S.H = info.height;
  S.dtype = info.id_dtype;
  S.IdArray = S.dtype === "uint16" ? Uint16Array : Uint8Array;
  S.ids = new S.IdArray(S.W * S.H);
  canvas.width = picture.width = S.W;
  canvas.height = picture.height = S.H;
  const longer = Math.max(S.W, S.H); // the longer side fills --side (painter.css: fits the window)
  for (const el of [canvas, picture]) {
    el.style.width = `calc(var(--side) * ${S.W / longer})`;
    el.style.height = `calc(var(--side) * ${S.H / longer})`;
  }
  S.image = ctx.createImageData(S.W, S.H);
  S.pictureImage = pictureCtx.createImageData(S.W, S.H);
  S.lut = new Uint32Array(info.num_ids);
  describe(info);
  select(0);
  setRadius(S.radius);
  $("example").hidden = !info.examples;
  const offer = info.browser || {};
  const serverOption = $("runtime").querySelector('option[value="server"]');
  const browserOption = $("runtime").querySelector('option[value="browser"]');
  serverOption.disabled = STATIC_SITE;
  if (STATIC_SITE) serverOption.textContent = "server (none: a static site)";
  browserOption.disabled = !offer.available;
  if (!offer.available) browserOption.title = offer.reason || "";
  $("runtime").addEventListener("change", () => setRuntime($("runtime").value));
  bind();
  render();
  buttons();
  if (info.examples) {
    S.ids.set(await exampleIds(0)); // a first scene to paint over
    render();
  }
  S.dirty = true;
  const wanted = STATIC_SITE || params.get("runtime") === "browser" ? "browser" : "server";
  if (wanted === "browser" && !offer.available) status(`browser mode unavailable: ${offer.reason}`, true);
  await setRuntime(wanted === "browser" && offer.available ? "browser" : "server");
}

const idle = () => !S.inFlight && !S.dirty && S.lastReply === S.lastSent && picture.dataset.frame === String(S.lastSent);
spadeRt.state = S;
spadeRt.browser = B;
spadeRt.idle = idle;
window.painter = { state: S, idle };
init().catch((err) => status(`cannot start the painter: ${err.message}`, true));
