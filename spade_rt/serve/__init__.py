"""`spade-rt serve`: the live painter, the HTTP API and batching, on Starlette + uvicorn; `spade-rt triton`.

- ``settings``: the server's limits, trust lists and batching knobs: one table (``ServeSettings``), each field
  with its default, flag, check, ``/v1/model`` entry and docs row;
- ``trust``: the browser trust boundary (Host names against DNS rebinding, Origins against cross-site requests
  and WebSocket hijacking), outermost ASGI middleware;
- ``batching``: concurrent requests -> one backend call (max batch, max delay, bounded queue);
- ``inputs``: request bodies and painter frames -> model ids through the one label pipeline
  (``spade_rt.labels``), so the server gives exactly the ``Synthesizer``'s pictures;
- ``metrics``: Prometheus metrics through ``prometheus_client`` (requests, errors, refusals, abandoned work,
  latency and batch-size histograms);
- ``app``: the Starlette application (painter at ``/``, ``/v1/*``, ``/healthz``, ``/metrics``, ``/ws``);
- ``server``: uvicorn on a socket bound here (loopback by default) with every connection limit as one of its
  options, plus the connection limit decided per connection when it opens (exact under bursts) and a deadline
  for request heads; graceful shutdown;
- ``triton``: a Triton Inference Server model repository for a graph or an engine; ``triton_python``: the
  python-backend model that runs the runtime inside Triton;
- ``web_runtime``: the painter's browser mode: where onnxruntime-web's files are found, the graph for browsers;
- ``static/``: the painter, plain HTML + JavaScript (no build step, nothing fetched from elsewhere).

torch-free when serving ONNX graphs and engines: the model is opened through ``Synthesizer``.
"""
