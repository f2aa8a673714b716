// spade-rt painter: paint a label map, watch the model's picture follow. Plain JavaScript, no build step.
//
// The label map is an integer id buffer (Uint8Array, Uint16Array past 256 classes). Brush, fill, undo and
// loads all write ids into it; the canvas only shows it (putImageData of palette colours, never read back),
// so what is sent is exactly what was painted. Frames go over one WebSocket with at most one in flight:
// while the server works, further edits only mark the map dirty, and the newest map is sent when the
// picture arrives (latest wins, nothing queues). Wire format: u32 LE header length, JSON header, payload.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const HISTORY = 100; // undo steps kept

  const S = {
    info: null, W: 0, H: 0, IdArray: Uint8Array, dtype: "uint8", ids: null, lut: null,
    current: 0, tool: "brush", radius: 4, undo: [], redo: [], drawing: false, last: null,
    ws: null, retry: 250, frame: 0, inFlight: false, dirty: false, sentAt: new Map(),
    lastSent: -1, lastReply: -1, picture: null, pictureUrl: null, exampleSeed: 0, image: null,
  };
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
    if (!S.dirty || S.inFlight || !S.ws || S.ws.readyState !== WebSocket.OPEN) return;
    S.dirty = false;
    S.inFlight = true;
    S.frame += 1;
    const header = { frame: S.frame, seed: seed(), height: S.H, width: S.W, dtype: S.dtype };
    S.sentAt.set(S.frame, performance.now());
    S.lastSent = S.frame;
    S.ws.send(pack(header, S.ids));
  }

  function onReply(buffer) {
    const [h, payload] = unpack(buffer);
    const sent = S.sentAt.get(h.frame);
    S.sentAt.delete(h.frame);
    S.inFlight = false;
    S.lastReply = h.frame;
    if (h.error) {
      status(`frame ${h.frame}: ${h.error}`, true);
    } else {
      const rt = sent === undefined ? NaN : performance.now() - sent;
      S.picture = new Blob([payload], { type: "image/png" });
      const url = URL.createObjectURL(S.picture);
      img.onload = () => {
        if (S.pictureUrl) URL.revokeObjectURL(S.pictureUrl);
        S.pictureUrl = url;
        img.dataset.frame = String(h.frame);
      };
      img.src = url;
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
      $("connection").textContent = "disconnected: reconnecting…";
      $("connection").classList.add("error");
      S.inFlight = false;
      setTimeout(connect, S.retry);
      S.retry = Math.min(S.retry * 2, 5000);
    };
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
      replace(await fetchIds("/v1/labels?resize=true", { method: "POST", headers: { "Content-Type": "image/png" }, body: file }));
      status(`loaded ${file.name}`);
    } catch (err) {
      status(`${file.name}: ${err.message}`, true);
    }
  }

  async function example(seedValue) {
    try {
      replace(await fetchIds(`/v1/example?seed=${seedValue}&format=ids`));
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
    const res = await fetch("/v1/model");
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
    bind();
    render();
    buttons();
    if (info.examples) {
      S.ids.set(await fetchIds(`/v1/example?seed=0&format=ids`)); // a first scene to paint over
      render();
    }
    S.dirty = true;
    connect();
  }

  window.painter = {
    state: S,
    idle: () => !S.inFlight && !S.dirty && S.lastReply === S.lastSent && img.dataset.frame === String(S.lastSent),
  };
  init().catch((err) => status(`cannot start the painter: ${err.message}`, true));
})();
