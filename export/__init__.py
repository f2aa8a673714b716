"""Export: the SPADE generator -> exact ONNX inference graphs (folding, static and dedup graphs), verified
against the PyTorch network before anything is written. Imports the model; never training or bench."""
