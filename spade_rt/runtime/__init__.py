"""The torch-free runtime: backend interface and registry, model kinds, the spec contract, ONNX Runtime
backend, the ``Synthesizer`` and folder jobs. See docs/architecture.md."""
