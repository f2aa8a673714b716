"""The TensorRT wing: everything that knows TensorRT or TensorRT-RTX, and nothing else does.

- ``adapter``: the one place where ``tensorrt`` (10.x/11.x) and ``tensorrt_rtx`` differ;
- ``build``: ONNX graph -> engine + manifest (`spade-rt build`);
- ``manifest``: the JSON beside every engine, and staleness (can this engine run here?);
- ``backend``: the runtime backend that opens engines (manifest, staleness, trust checks; torch-free);
- ``runner``: what runs an opened engine per call (buffers, shapes, streams, CUDA graphs; cuda-python);
- ``cuda``: CUDA from Python without torch;
- ``inspect``: `spade-rt inspect X.engine`;
- ``recipes`` (+ ``recipes.json``): export + build options per preset and size.

The torch-free runtime imports this package only when an engine is opened (through
``spade_rt.runtime.registry``); nothing here imports torch.
"""
