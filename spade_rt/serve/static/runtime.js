// The painter's browser mode: onnxruntime-web in the page (WebGPU where the browser offers a real adapter,
// else WASM; ?backend=wasm forces WASM, ?backend=webgpu takes any adapter, a software one too; ?threads=N the
// WASM threads), and the model's output as RGB bytes exactly as the Python runtime makes them.

function fallbackAdapter(a) { // SwiftShader and other CPU fallbacks: WASM is faster there
  const info = a.info || {};
  const words = `${info.vendor || ""} ${info.architecture || ""} ${info.description || ""}`;
  return Boolean(a.isFallbackAdapter || info.isFallbackAdapter || /swiftshader/i.test(words));
}

/**
 * onnxruntime-web and a session on the graph. offer: /v1/model's "browser"; urls: {graph, ort}; params: the
 * page's query; say(text): progress for the status line. -> {ort, session, backend, threads, output}.
 */
export async function loadBrowserRuntime(offer, urls, params, say) {
  if (!offer.available) throw new Error(offer.reason || "this server offers no browser mode");
  let backend = "wasm";
  const want = params.get("backend");
  if (want !== "wasm" && offer.webgpu && navigator.gpu) {
    try {
      const adapter = await navigator.gpu.requestAdapter();
      if (adapter && (want === "webgpu" || !fallbackAdapter(adapter))) backend = "webgpu"; // webgpu: any adapter
    } catch (_) { /* no adapter: WASM */ }
  }
  const base = new URL(urls.ort, location.href).href;
  say(`loading onnxruntime-web (${backend === "webgpu" ? "WebGPU" : "WASM"})…`);
  const ort = await import(base + (backend === "webgpu" ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs"));
  ort.env.wasm.wasmPaths = base;
  const asked = Number(params.get("threads"));
  const cores = navigator.hardwareConcurrency || 1;
  // threads need SharedArrayBuffer, which browsers give only cross-origin isolated pages (COOP + COEP)
  const threads = self.crossOriginIsolated ? (Number.isInteger(asked) && asked > 0 ? asked : Math.min(4, cores)) : 1;
  ort.env.wasm.numThreads = threads;
  say("loading the graph…");
  const res = await fetch(urls.graph);
  if (!res.ok) throw new Error(`the graph: ${res.status}`);
  const graph = new Uint8Array(await res.arrayBuffer());
  const session = await ort.InferenceSession.create(graph, { executionProviders: [backend], graphOptimizationLevel: "all" });
  return { ort, session, backend, threads, output: session.outputNames[0] };
}

/** The style vector of VAE models in browser mode (mulberry32 + Box-Muller; not numpy's stream). */
export function seededNormal(seedValue, n) {
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

/** float16 bits -> number. */
export function half(h) {
  const e = (h >> 10) & 31, m = h & 1023, s = h & 32768 ? -1 : 1;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** The graph's image tensor -> (H, W, 3) uint8, as the Python runtime (float_to_uint8). */
export function toRgb(t, W, H) {
  const n = W * H, rgb = new Uint8Array(n * 3), d = t.data;
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
