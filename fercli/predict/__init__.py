"""Inference with an exported .onnx file, never importing torch.

onnx_model   a fercli .onnx file: metadata, preprocessing, the onnxruntime session
providers    which execution provider runs a model (cpu, cuda, openvino)
bundled      the bundled models by name (--model fast|accurate|FILE.onnx)
workers      the processes that decode (and on the CPU predict) each chunk
faces        predict-dir's face stage: find, align and predict every face of a picture
folder       predict_dir(): a folder's files to rows, resume, summary
output       the rows' columns, CSV and JSONL writing, --abstain
record       what an output was made with, for --resume
video        predict-video: frames, tracks, smoothing, timelines, summaries
ray          the Ray Data actors of --engine ray
"""
