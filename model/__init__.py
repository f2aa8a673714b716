"""The SPADE model in PyTorch: nobody's private part (training, export, bench and the torch backend import it).

- ``config``: ``GeneratorConfig``, the typed configuration (field names of the original options);
- ``layers``, ``networks``: generator and style encoder, state-dict compatible with NVlabs/SPADE;
- ``semantics``: the original network input (one-hot + instance edge channel) built from label ids;
- ``native_format``: spade-rt's model file (one safetensors file, weights + JSON config);
- ``original_checkpoint``, ``convert``: safe import of original ``latest_net_G.pth`` / ``latest_net_E.pth``;
- ``costs``: parameters and MACs; ``describe``: `spade-rt info`;
- ``torch_backend``: the network as a runtime backend (registry name ``torch``).

Imports torch, numpy, pillow, safetensors and the runtime core (spade_rt.labels, presets, errors); never
training, export or bench (tests/test_architecture.py enforces it).
"""
