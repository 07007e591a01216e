"""fercli's defaults, written once: the CLI's options and the library's parameters both read
them from here. No imports beyond the standard library, so any layer may use it."""

# clean: pixel standard deviation (0-255 scale, on the 48x48 image) under which an image
# counts as blank. On FER-2013 the 12 all-black images have 0, a flat gray one 0.65 and a
# black frame with one bright speck 4.1; the darkest real face has 9.1 (docs/clean.md).
BLANK_STD = 5.0

# --- predict (predict-dir, predict-video, fercli.Predictor) ----------------------------------

# onnxruntime execution providers (fercli.predict.providers): auto takes CUDA, else OpenVINO,
# else the CPU, where the model's card allows it.
PROVIDERS = ("auto", "cpu", "cuda", "openvino")
PROVIDER = "auto"
# predict-dir: images per model call (and per chunk a worker decodes).
BATCH_SIZE = 256
# Where faces are looked for: auto (in pictures whose shorter side exceeds 96 pixels), detect
# (always) or none (the picture is the face). FACES is the command line's and the Python
# API's default; fercli.predict.folder.predict_dir, the library function, defaults to none.
FACE_MODES = ("auto", "detect", "none")
FACES = "auto"
# None: each detector's own default score (its min_face_score: yunet 0.6, mtcnn 0.95; scores
# are on each detector's own scale), chosen with benchmarks/bench_faces.py (docs/detectors.md).
MIN_FACE_SCORE = None
ABSTAIN = 0.0  # --abstain: 0, off
TOPK = 0  # --topk: no top-k columns
THREADS_PER_ACTOR = 1  # --engine ray: onnxruntime threads (and Ray CPUs) of each actor
# predict-video: frames sampled per second (0: every frame), and the seconds a track waits
# for a face it lost.
FPS = 2.0
TRACK_GAP = 1.0

# --- clean -----------------------------------------------------------------------------------

# The perceptual hash of the duplicate search (an imagehash algorithm) and its side: hashes
# of HASH_SIZE**2 bits.
HASH = "phash"
HASH_SIZE = 8
# Near duplicates: hashes at most this many bits apart, for 64-bit hashes (scaled to other
# sizes). Measured on FER-2013 with 64-bit phash (docs/clean.md, "Near duplicates"): pairs at
# distance 6 or less are the same photograph; at 8 about half are different people.
NEAR_THRESHOLD_64 = 6
# clean: a near-duplicate pair is kept only where its pixels agree this well (normalized
# cross-correlation over small shifts, scales and turns; docs/near-duplicates.md says how it
# was chosen)
VERIFY_THRESHOLD = 0.929

# --- train, evaluate, export -----------------------------------------------------------------

# evaluate: the split scored, the torch device of a checkpoint (an .onnx model's provider
# follows it), and the part of a person-level split file
EVALUATE_SPLIT = "test"
DEVICE = "auto"
SPLIT_FILE_PART = "val"
# evaluate --split-file's --faces: the photos are the faces (fercli.evaluate.evaluation.
# evaluate_part, the library function, detects them in large photos: auto)
SPLIT_FILE_FACES = "none"
# export-onnx: the lowest opset the torch.export-based exporter writes natively, and the
# training images that calibrate int8 ranges
OPSET = 18
CALIBRATION_IMAGES = 1000
