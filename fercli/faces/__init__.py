"""Faces in photos: detectors (a plugin hook, MTCNN built in), alignment to FER-2013's
framing, and the per-face rows of `predict-dir --faces`. No torch here."""
