"""The ground layer: the network description, the readers of checkpoints, ONNX files and
conversion OUTDIRs, preprocessing and data, errors and small helpers. It imports nothing
else of the project (docs/design.md)."""
