"""`spade-rt serve`: the live painter, the HTTP API and batching, on Starlette + uvicorn; `spade-rt triton`.

- ``settings``: the server's limits and batching knobs (``ServeSettings``);
- ``batching``: concurrent requests -> one backend call (max batch, max delay, bounded queue);
- ``inputs``: request bodies and painter frames -> model ids through the one label pipeline
  (``spade_rt.labels``), so the server gives exactly the ``Synthesizer``'s pictures;
- ``metrics``: Prometheus text exposition (requests, errors, latency and batch-size histograms);
- ``app``: the Starlette application (painter at ``/``, ``/v1/*``, ``/healthz``, ``/metrics``, ``/ws``);
- ``server``: uvicorn on a socket bound here (loopback by default), graceful shutdown;
- ``triton``: a Triton Inference Server model repository for a graph or an engine;
- ``web_runtime``: the painter's browser mode: where onnxruntime-web's files are found, the graph for browsers;
- ``static/``: the painter, plain HTML + JavaScript (no build step, nothing fetched from elsewhere).

torch-free when serving ONNX graphs and engines: the model is opened through ``Synthesizer``.
"""
