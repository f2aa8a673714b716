"""Training: datasets in the original layouts, the discriminator, SPADE losses, the resumable loop and its
options (``TrainOptions``), distributed helpers, run outputs, the demo recipe. Imports the model (spade_rt.model).
"""
