"""Faces in pictures, no torch here: `detect` (the Detector interface, boxes and landmarks,
the default detector and thresholds), the built-in detectors `yunet` and `mtcnn` (numpy and
onnxruntime; their weights and licences in `weights/`), `align` (to FER-2013's framing) and
`tracking` (one track per person across a video's frames). Predicting the faces found is
fercli.predict's (predict.faces, predict.video)."""
