"""One module per `spade-rt` subcommand: each has ``register(subparsers)`` and handlers that import the
toolchain (torch, onnx) lazily, so the runtime commands stay torch-free."""
