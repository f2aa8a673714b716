"""spade-rt: real-time SPADE/GauGAN semantic image synthesis.

The runtime (this package) is torch-free; the toolchain lives in ``spade_rt.training`` and
``spade_rt.export`` and is imported only by the commands that need it.

    from spade_rt import Synthesizer
    with Synthesizer("model.onnx") as synth:
        rgb = synth(label_ids)
"""

__version__ = "0.1.0"
__all__ = ["Synthesizer", "__version__"]


def __getattr__(name: str):
    """Lazy: ``import spade_rt`` stays instant; the runtime loads on first use."""
    if name == "Synthesizer":
        from spade_rt.runtime.synthesizer import Synthesizer

        return Synthesizer
    raise AttributeError(f"module 'spade_rt' has no attribute {name!r}")
