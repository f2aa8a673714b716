"""spade-rt: real-time SPADE/GauGAN semantic image synthesis.

The runtime (this package) is torch-free; the toolchain lives in ``spade_rt.training`` and
``spade_rt.export`` and is imported only by the commands that need it.
"""

__version__ = "0.1.0"
