// spade-rt painter: paint a label map, watch the model's picture follow. Plain JavaScript, no build step.
//
// The label map is an integer id buffer (Uint8Array, Uint16Array past 256 classes). Brush, fill, undo and
// loads all write ids into it; the canvas only shows it (putImageData of palette colours, never read back),
// so what is sent is exactly what was painted. Frames go over one WebSocket with at most one in flight:
// while the server works, further edits only mark the map dirty, and the newest map is sent when the
// picture arrives (latest wins, nothing queues). Wire format: u32 LE header length, JSON header, payload.
//
// Browser mode (the "compute" switch, or ?runtime=browser): the same id buffer goes to onnxruntime-web in
// this page instead (WebGPU where the browser offers a real adapter, else WASM; ?backend=wasm forces WASM,
// ?backend=webgpu takes any adapter, a software one too; ?threads=N the WASM threads), with the same contract: one frame in flight, the newest map next. Label
// PNGs are then decoded here too (decodePng: the server's rules), so the server computes nothing. A static
// site (`spade-rt web`, <body data-site="static">) has browser mode only. window.spadeRt.last holds the
// last frame: {ids, width, height, rgb, runtime, backend, ms}.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const HISTORY = 100; // undo steps kept
  const params = new URLSearchParams(location.search);
  const STATIC_SITE = document.body.dataset.site === "static";
  const URLS = STATIC_SITE
    ? { model: "model.json", graph: "graph.onnx", ort: "ort/", examples: "examples.bin" }
    : { model: "/v1/model", graph: "/v1/graph", ort: "/ort/" };
  const B = { session: null, loading: null, backend: null, threads: 1, ort: null, output: null, examples: null };

  const S = {
    info: null, W: 0, H: 0, IdArray: Uint8Array, dtype: "uint8", ids: null, lut: null,
    current: 0, tool: "brush", radius: 4, undo: [], redo: [], drawing: false, last: null,
    ws: null, retry: 250, frame: 0, inFlight: false, dirty: false, sentAt: new Map(), shownFrame: 0,
    lastSent: -1, lastReply: -1, picture: null, pictureUrl: null, exampleSeed: 0, image: null,
    runtime: "server", wsWanted: false, sentIds: new Map(),
  };
  const spadeRt = (window.spadeRt = { last: null });
  const canvas = $("labels");
  const ctx = canvas.getContext("2d");
  const img = $("picture");

  function status(text, error = false) {
    $("status").textContent = text;
    $("status").classList.toggle("error", error);
  }

  // ---- drawing into the id buffer -------------------------------------------------------------------
  function stamp(cx, cy) {
    const r = S.radius, r2 = r * r, W = S.W, H = S.H, ids = S.ids, c = S.current;
    for (let dy = -r; dy <= r; dy++) {
      const y = cy + dy;
      if (y < 0 || y >= H) continue;
      for (let dx = -r; dx <= r; dx++) {
        const x = cx + dx;
        if (x < 0 || x >= W || dx * dx + dy * dy > r2) continue;
        ids[y * W + x] = c;
      }
    }
  }

  function line(a, b) { // integer steps from a to b (exclusive of a), a disc at each
    const dx = b.x - a.x, dy = b.y - a.y, n = Math.max(Math.abs(dx), Math.abs(dy));
    if (n === 0) { stamp(b.x, b.y); return; }
    for (let i = 1; i <= n; i++) {
      stamp(a.x + Math.floor((2 * dx * i + n) / (2 * n)), a.y + Math.floor((2 * dy * i + n) / (2 * n)));
    }
  }

  function fill(x, y) { // 4-connected region of the clicked id -> the current class
    const W = S.W, H = S.H, ids = S.ids, target = ids[y * W + x], c = S.current;
    if (target === c) return false;
    const stack = [y * W + x];
    ids[y * W + x] = c;
    while (stack.length) {
      const p = stack.pop(), px = p % W, py = (p - px) / W;
      if (px > 0 && ids[p - 1] === target) { ids[p - 1] = c; stack.push(p - 1); }
      if (px < W - 1 && ids[p + 1] === target) { ids[p + 1] = c; stack.push(p + 1); }
      if (py > 0 && ids[p - W] === target) { ids[p - W] = c; stack.push(p - W); }
      if (py < H - 1 && ids[p + W] === target) { ids[p + W] = c; stack.push(p + W); }
    }
    return true;
  }

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
    $("undo").disabled = S.undo.length === 0;
    $("redo").disabled = S.redo.length === 0;
    $("download-picture").disabled = S.picture === null;
  }

  function changed() {
    render();
    buttons();
    S.dirty = true;
    send();
  }

  function remember() { // before an edit: the map as it was, for undo
    S.undo.push(S.ids.slice());
    if (S.undo.length > HISTORY) S.undo.shift();
    S.redo = [];
  }

  function replace(ids) {
    remember();
    S.ids.set(ids);
    changed();
  }

  function undo() {
    if (!S.undo.length) return;
    S.redo.push(S.ids.slice());
    S.ids.set(S.undo.pop());
    changed();
  }

  function redo() {
    if (!S.redo.length) return;
    S.undo.push(S.ids.slice());
    S.ids.set(S.redo.pop());
    changed();
  }

  canvas.addEventListener("pointerdown", (e) => {
    if (e.button !== 0 || !S.ids) return;
    e.preventDefault();
    const p = toPixel(e);
    if (S.tool === "fill") {
      const before = S.ids.slice();
      if (fill(p.x, p.y)) {
        S.undo.push(before);
        if (S.undo.length > HISTORY) S.undo.shift();
        S.redo = [];
        changed();
      }
      return;
    }
    canvas.setPointerCapture(e.pointerId);
    remember();
    S.drawing = true;
    S.last = p;
    stamp(p.x, p.y);
    changed();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!S.drawing) return;
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
    for (const ev of events.length ? events : [e]) {
      const p = toPixel(ev);
      line(S.last, p);
      S.last = p;
    }
    changed();
  });
  const end = () => { S.drawing = false; };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);

  // ---- the live connection --------------------------------------------------------------------------
  function pack(header, payload) {
    const head = new TextEncoder().encode(JSON.stringify(header));
    const bytes = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
    const out = new Uint8Array(4 + head.length + bytes.length);
    new DataView(out.buffer).setUint32(0, head.length, true);
    out.set(head, 4);
    out.set(bytes, 4 + head.length); // a copy: later edits never touch a sent frame
    return out;
  }

  function unpack(buffer) {
    const n = new DataView(buffer).getUint32(0, true);
    const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, n)));
    return [header, new Uint8Array(buffer, 4 + n)];
  }

  function seed() {
    const v = Number($("seed").value);
    return Number.isInteger(v) && v >= 0 && v <= 4294967295 ? v : 0;
  }

  function send() {
    if (!S.dirty || S.inFlight) return;
    if (S.runtime === "browser") {
      if (B.session) browserFrame();
      return;
    }
    if (!S.ws || S.ws.readyState !== WebSocket.OPEN) return;
    S.dirty = false;
    S.inFlight = true;
    S.frame += 1;
    const header = { frame: S.frame, seed: seed(), height: S.H, width: S.W, dtype: S.dtype };
    S.sentAt.set(S.frame, performance.now());
    S.lastSent = S.frame;
    S.sentIds.set(S.frame, S.ids.slice());
    S.ws.send(pack(header, S.ids));
  }

  function showPicture(blob, frame) {
    S.picture = blob;
    const url = URL.createObjectURL(blob);
    img.onload = () => {
      if (S.pictureUrl) URL.revokeObjectURL(S.pictureUrl);
      S.pictureUrl = url;
      img.dataset.frame = String(frame);
    };
    img.src = url;
  }

  async function onReply(buffer) {
    const [h, payload] = unpack(buffer);
    const sent = S.sentAt.get(h.frame), ids = S.sentIds.get(h.frame);
    S.sentAt.delete(h.frame);
    S.sentIds.delete(h.frame);
    if (h.error) {
      S.inFlight = false;
      S.lastReply = h.frame;
      status(`frame ${h.frame}: ${h.error}`, true);
    } else {
      const rt = sent === undefined ? NaN : performance.now() - sent;
      S.inFlight = false;
      S.lastReply = h.frame;
      send(); // the newest map goes out first: the server computes it while this picture is decoded and shown
      try {
        const p = await decodePng(payload.slice().buffer, Infinity);
        if (h.frame < S.shownFrame) return; // a newer picture came in while this one was decoded
        spadeRt.last = { ids, width: p.W, height: p.H, rgb: p.data, runtime: "server", backend: S.info.backend, ms: rt };
      } catch (err) {
        status(`frame ${h.frame}: cannot read the picture: ${err.message}`, true);
      }
      S.shownFrame = h.frame;
      showPicture(new Blob([payload], { type: "image/png" }), h.frame);
      $("latency").textContent =
        `· frame ${h.frame}: ${rt.toFixed(0)} ms (server ${h.server_ms.toFixed(0)} ms: ` +
        `compute ${h.compute_ms.toFixed(0)}, queue ${h.queue_ms.toFixed(0)}, batch ${h.batch})`;
      $("latency").dataset.ms = rt.toFixed(1);
      if ($("status").classList.contains("error")) status("");
      buttons();
    }
    send();
  }

  function connect() {
    S.wsWanted = true;
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
    ws.binaryType = "arraybuffer";
    S.ws = ws;
    ws.onopen = () => {
      S.retry = 250;
      $("connection").textContent = "live";
      $("connection").classList.remove("error");
      S.inFlight = false;
      S.dirty = true;
      send();
    };
    ws.onmessage = (ev) => onReply(ev.data);
    ws.onclose = () => {
      if (!S.wsWanted || S.ws !== ws) return; // closed on purpose: browser mode
      $("connection").textContent = "disconnected: reconnecting…";
      $("connection").classList.add("error");
      S.inFlight = false;
      setTimeout(connect, S.retry);
      S.retry = Math.min(S.retry * 2, 5000);
    };
  }

  // ---- browser mode: onnxruntime-web in this page ----------------------------------------------------
  function fallbackAdapter(a) { // SwiftShader and other CPU fallbacks: WASM is faster there
    const info = a.info || {};
    const words = `${info.vendor || ""} ${info.architecture || ""} ${info.description || ""}`;
    return Boolean(a.isFallbackAdapter || info.isFallbackAdapter || /swiftshader/i.test(words));
  }

  async function loadBrowser() {
    const offer = S.info.browser || {};
    if (!offer.available) throw new Error(offer.reason || "this server offers no browser mode");
    let backend = "wasm";
    const want = params.get("backend");
    if (want !== "wasm" && offer.webgpu && navigator.gpu) {
      try {
        const adapter = await navigator.gpu.requestAdapter();
        if (adapter && (want === "webgpu" || !fallbackAdapter(adapter))) backend = "webgpu"; // webgpu: any adapter
      } catch (_) { /* no adapter: WASM */ }
    }
    const base = new URL(URLS.ort, location.href).href;
    status(`loading onnxruntime-web (${backend === "webgpu" ? "WebGPU" : "WASM"})…`);
    const ort = await import(base + (backend === "webgpu" ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs"));
    ort.env.wasm.wasmPaths = base;
    const asked = Number(params.get("threads"));
    const cores = navigator.hardwareConcurrency || 1;
    // threads need SharedArrayBuffer, which browsers give only cross-origin isolated pages (COOP + COEP)
    B.threads = self.crossOriginIsolated ? (Number.isInteger(asked) && asked > 0 ? asked : Math.min(4, cores)) : 1;
    ort.env.wasm.numThreads = B.threads;
    status("loading the graph…");
    const res = await fetch(URLS.graph);
    if (!res.ok) throw new Error(`the graph: ${res.status}`);
    const graph = new Uint8Array(await res.arrayBuffer());
    B.session = await ort.InferenceSession.create(graph, { executionProviders: [backend], graphOptimizationLevel: "all" });
    B.ort = ort;
    B.backend = backend;
    B.output = B.session.outputNames[0];
    status("");
  }

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

  function seededNormal(seedValue, n) { // the style vector of VAE models in browser mode (not numpy's stream)
    let a = seedValue >>> 0;
    const next = () => { // mulberry32
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const z = new Float32Array(n);
    for (let i = 0; i < n; i++) z[i] = Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
    return z;
  }

  function half(h) { // float16 bits -> number
    const e = (h >> 10) & 31, m = h & 1023, s = h & 32768 ? -1 : 1;
    if (e === 0) return s * m * 2 ** -24;
    if (e === 31) return m ? NaN : s * Infinity;
    return s * (1 + m / 1024) * 2 ** (e - 15);
  }

  function toRgb(t) { // the graph's image -> (H, W, 3) uint8, as the Python runtime (float_to_uint8)
    const W = S.W, H = S.H, n = W * H, rgb = new Uint8Array(n * 3), d = t.data;
    if (t.type === "uint8") { rgb.set(d.subarray(0, n * 3)); return rgb; } // (1, H, W, 3)
    const f = Math.fround, get = t.type === "float16" && d instanceof Uint16Array ? (i) => half(d[i]) : (i) => d[i];
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < n; i++) { // (x + 1) / 2 * 255 in float32, clip, truncate: tensor2im
        const v = f(f(f(get(c * n + i) + 1) / 2) * 255);
        rgb[i * 3 + c] = v <= 0 ? 0 : v >= 255 ? 255 : Math.trunc(v);
      }
    }
    return rgb;
  }

  function pngOf(rgb) {
    const c = document.createElement("canvas");
    c.width = S.W;
    c.height = S.H;
    const g = c.getContext("2d"), im = g.createImageData(S.W, S.H);
    for (let i = 0, n = S.W * S.H; i < n; i++) {
      im.data[4 * i] = rgb[3 * i]; im.data[4 * i + 1] = rgb[3 * i + 1]; im.data[4 * i + 2] = rgb[3 * i + 2]; im.data[4 * i + 3] = 255;
    }
    g.putImageData(im, 0, 0);
    return new Promise((resolve) => c.toBlob(resolve, "image/png"));
  }

  async function browserFrame() {
    S.dirty = false;
    S.inFlight = true;
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
      const rgb = toRgb(out[B.output]);
      spadeRt.last = { ids, width: S.W, height: S.H, rgb, runtime: "browser", backend: B.backend, ms };
      showPicture(await pngOf(rgb), frame);
      const how = B.backend === "webgpu" ? "WebGPU" : `WASM, ${B.threads} thread${B.threads === 1 ? "" : "s"}`;
      $("latency").textContent = `· frame ${frame}: ${ms.toFixed(0)} ms in this browser (${how})`;
      $("latency").dataset.ms = ms.toFixed(1);
      if ($("status").classList.contains("error")) status("");
    } catch (err) {
      status(`frame ${frame}: ${err.message || err}`, true);
    }
    S.lastReply = frame;
    S.inFlight = false;
    buttons();
    send();
  }

  function closeSocket() {
    S.wsWanted = false;
    if (S.ws) S.ws.close();
    S.ws = null;
    $("connection").textContent = STATIC_SITE ? "static site" : "not connected: computing here";
    $("connection").classList.remove("error");
  }

  async function setRuntime(mode) {
    $("runtime").value = mode;
    if (mode === "browser") {
      S.runtime = "browser";
      closeSocket();
      S.inFlight = false;
      try {
        if (!B.loading) B.loading = loadBrowser();
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
      S.inFlight = false;
      runtimeNote();
      if (!S.ws) connect();
    }
  }

  // ---- label PNGs, decoded here (browser mode): the server's rules (spade_rt.labels) -------------------
  async function inflate(parts) {
    const stream = new Blob(parts).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  async function decodePng(buffer, maxPixels) { // -> {W, H, type, depth, channels, data (samples), palette}
    const b = new Uint8Array(buffer), dv = new DataView(buffer);
    const SIG = [137, 80, 78, 71, 13, 10, 26, 10];
    if (b.length < 33 || SIG.some((v, i) => b[i] !== v)) throw new Error("not a PNG (only PNG is read as a label map)");
    let o = 8, W = 0, H = 0, depth = 0, type = 0, interlace = 0, palette = null;
    const idat = [];
    while (o + 12 <= b.length) {
      const n = dv.getUint32(o), t = String.fromCharCode(b[o + 4], b[o + 5], b[o + 6], b[o + 7]);
      if (o + 12 + n > b.length) throw new Error("a damaged PNG (a chunk runs past the end)");
      if (t === "IHDR") {
        W = dv.getUint32(o + 8); H = dv.getUint32(o + 12); depth = b[o + 16]; type = b[o + 17]; interlace = b[o + 20];
        if (W * H > maxPixels) throw new Error(`${W}x${H} (${W * H} pixels): more than the ${maxPixels} accepted`);
      } else if (t === "PLTE") palette = b.subarray(o + 8, o + 8 + n);
      else if (t === "IDAT") idat.push(b.subarray(o + 8, o + 8 + n));
      else if (t === "IEND") break;
      o += 12 + n;
    }
    const channels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[type];
    if (!W || !H || !channels || !idat.length) throw new Error("a damaged PNG (no header or no image data)");
    if (interlace) throw new Error("an interlaced PNG: save it without interlacing");
    const bits = channels * depth, stride = Math.ceil((W * bits) / 8), bpp = Math.max(1, bits >> 3);
    const raw = await inflate(idat);
    if (raw.length < H * (stride + 1)) throw new Error("a damaged PNG (image data too short)");
    const px = new Uint8Array(H * stride);
    for (let y = 0; y < H; y++) {
      const f = raw[y * (stride + 1)], src = y * (stride + 1) + 1, row = y * stride, prev = row - stride;
      for (let i = 0; i < stride; i++) {
        const a = i >= bpp ? px[row + i - bpp] : 0, up = y ? px[prev + i] : 0, c = y && i >= bpp ? px[prev + i - bpp] : 0;
        let v = raw[src + i];
        if (f === 1) v += a;
        else if (f === 2) v += up;
        else if (f === 3) v += (a + up) >> 1;
        else if (f === 4) {
          const p = a + up - c, pa = Math.abs(p - a), pb = Math.abs(p - up), pc = Math.abs(p - c);
          v += pa <= pb && pa <= pc ? a : pb <= pc ? up : c;
        } else if (f !== 0) throw new Error(`a damaged PNG (filter ${f})`);
        px[row + i] = v & 255;
      }
    }
    const n = W * H * channels, data = depth === 16 ? new Uint16Array(n) : new Uint8Array(n);
    for (let y = 0; y < H; y++) {
      for (let k = 0; k < W * channels; k++) {
        const at = y * stride;
        if (depth === 16) data[y * W * channels + k] = (px[at + 2 * k] << 8) | px[at + 2 * k + 1];
        else if (depth === 8) data[y * W * channels + k] = px[at + k];
        else {
          const bit = k * depth, byte = px[at + (bit >> 3)];
          data[y * W * channels + k] = (byte >> (8 - depth - (bit & 7))) & ((1 << depth) - 1);
        }
      }
    }
    return { W, H, type, depth, channels, data, palette };
  }

  function resizeNearest(src, w, h) { // Pillow's NEAREST (ImagingScaleAffine): accumulated source coordinates
    const W = S.W, H = S.H, out = new Int32Array(W * H), xs = new Int32Array(W);
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

  async function labelsHere(file) { // a label PNG -> the model's ids, in this page
    const maxPixels = (S.info.limits && S.info.limits.max_map_pixels) || 2048 * 1024;
    const p = await decodePng(await file.arrayBuffer(), maxPixels);
    const n = p.W * p.H, stored = new Int32Array(n);
    if (p.type === 0 || p.type === 3) { // one channel: ids as stored (a palette PNG's indices)
      if (p.type === 0 && p.depth < 8) throw new Error(`a ${p.depth}-bit grey PNG: expected 8 or 16 bits of ids`);
      for (let i = 0; i < n; i++) stored[i] = p.data[i];
    } else if (p.type === 2 || p.type === 6) { // colours of the model's palette
      if (!S.info.palette) throw new Error(`has ${p.channels} channels: expected one channel of ids (this model has no palette)`);
      const byColour = new Map();
      for (const c of S.info.classes) byColour.set(parseInt(c.colour.slice(1), 16), c.id);
      const shift = p.depth === 16 ? 8 : 0;
      let unknown = 0;
      for (let i = 0; i < n; i++) {
        const d = p.data, k = i * p.channels;
        const id = byColour.get(((d[k] >> shift) << 16) | ((d[k + 1] >> shift) << 8) | (d[k + 2] >> shift));
        if (id === undefined) unknown++;
        stored[i] = id === undefined ? -1 : id;
      }
      if (unknown) throw new Error(`${unknown} pixels have colours outside the ${S.info.palette} palette`);
    } else {
      throw new Error("has 2 channels (grey + alpha): expected one channel of ids or the palette's colours");
    }
    const ids = resizeNearest(stored, p.W, p.H), out = new S.IdArray(S.W * S.H), dc = S.info.dontcare_id;
    let bad = 0;
    for (let i = 0; i < ids.length; i++) {
      const v = ids[i] === 255 && dc !== null && dc !== undefined ? dc : ids[i];
      if (v < 0 || v >= S.info.num_ids) bad++;
      out[i] = v;
    }
    if (bad) throw new Error(`${bad} pixels hold ids outside 0..${S.info.num_ids - 1}`);
    return out;
  }

  // ---- files --------------------------------------------------------------------------------------------
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

  const CRC = (() => {
    const t = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      t[n] = c >>> 0;
    }
    return t;
  })();

  function crc32(bytes) {
    let c = 0xffffffff;
    for (let i = 0; i < bytes.length; i++) c = CRC[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  }

  function labelPng() { // the id buffer as a one-channel PNG (8-bit, or 16-bit past 256 classes), stored deflate
    const W = S.W, H = S.H, wide = S.dtype === "uint16", row = 1 + W * (wide ? 2 : 1);
    const raw = new Uint8Array(H * row);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const v = S.ids[y * W + x], o = y * row + 1 + x * (wide ? 2 : 1);
        if (wide) { raw[o] = v >> 8; raw[o + 1] = v & 255; } else raw[o] = v;
      }
    }
    const blocks = Math.max(1, Math.ceil(raw.length / 65535));
    const z = new Uint8Array(2 + raw.length + 5 * blocks + 4);
    z[0] = 0x78; z[1] = 0x01;
    let o = 2;
    for (let b = 0; b < blocks; b++) {
      const chunk = raw.subarray(b * 65535, Math.min(raw.length, (b + 1) * 65535));
      z[o++] = b === blocks - 1 ? 1 : 0;
      z[o++] = chunk.length & 255; z[o++] = chunk.length >> 8;
      z[o++] = ~chunk.length & 255; z[o++] = (~chunk.length >> 8) & 255;
      z.set(chunk, o);
      o += chunk.length;
    }
    let a = 1, bsum = 0;
    for (let i = 0; i < raw.length; i++) { a = (a + raw[i]) % 65521; bsum = (bsum + a) % 65521; }
    new DataView(z.buffer).setUint32(o, ((bsum << 16) | a) >>> 0);
    const chunks = [];
    const chunk = (type, data) => {
      const out = new Uint8Array(12 + data.length), dv = new DataView(out.buffer);
      dv.setUint32(0, data.length);
      for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
      out.set(data, 8);
      dv.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
      chunks.push(out);
    };
    const ihdr = new Uint8Array(13), dv = new DataView(ihdr.buffer);
    dv.setUint32(0, W); dv.setUint32(4, H);
    ihdr[8] = wide ? 16 : 8; // bit depth; colour type 0 (greyscale), deflate, no filter, no interlace
    chunk("IHDR", ihdr);
    chunk("IDAT", z);
    chunk("IEND", new Uint8Array(0));
    return new Blob([new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]), ...chunks], { type: "image/png" });
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
      $("seed").value = String(crypto.getRandomValues(new Uint32Array(1))[0]);
      S.dirty = true;
      send();
    });
    $("load").addEventListener("change", (e) => {
      const file = e.target.files[0];
      if (file) loadFile(file);
      e.target.value = "";
    });
    $("download-picture").addEventListener("click", () => S.picture && download(S.picture, `spade-rt-picture-${S.lastReply}.png`));
    $("download-labels").addEventListener("click", () => download(labelPng(), "spade-rt-labels.png"));
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

  async function init() {
    const res = await fetch(URLS.model);
    const info = (S.info = await res.json());
    S.W = info.width;
    S.H = info.height;
    S.dtype = info.id_dtype;
    S.IdArray = S.dtype === "uint16" ? Uint16Array : Uint8Array;
    S.ids = new S.IdArray(S.W * S.H);
    canvas.width = S.W;
    canvas.height = S.H;
    const longer = Math.max(S.W, S.H); // the longer side fills --side (painter.css: fits the window)
    for (const el of [canvas, img]) {
      el.style.width = `calc(var(--side) * ${S.W / longer})`;
      el.style.height = `calc(var(--side) * ${S.H / longer})`;
    }
    S.image = ctx.createImageData(S.W, S.H);
    S.lut = new Uint32Array(info.num_ids);
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
    select(0);
    setRadius(S.radius);
    $("model-info").textContent =
      `${info.model} · ${info.preset} · ${info.width}x${info.height} · ${info.num_ids} classes · ${info.backend}`;
    if (!info.use_vae) {
      $("seed").disabled = true;
      $("random-z").disabled = true;
      $("style-note").textContent = "This model has no style input: the picture depends on the label map only.";
    } else {
      $("style-note").textContent = `VAE model: the seed draws its style vector z (${info.z_dim} values).`;
    }
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

  spadeRt.state = S;
  spadeRt.browser = B;
  spadeRt.idle = () => !S.inFlight && !S.dirty && S.lastReply === S.lastSent && img.dataset.frame === String(S.lastSent);
  window.painter = {
    state: S,
    idle: () => !S.inFlight && !S.dirty && S.lastReply === S.lastSent && img.dataset.frame === String(S.lastSent),
  };
  init().catch((err) => status(`cannot start the painter: ${err.message}`, true));
})();
