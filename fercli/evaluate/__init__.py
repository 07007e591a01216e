"""`fercli evaluate`: `evaluation` scores a checkpoint or an .onnx file on a dataset, a split
or a person-level split of photos (through predict-dir's pipeline), with calibration,
coverage, leak-free figures and plots."""
