"""fercli's defaults, written once: the CLI's options and the library's parameters both read
them from here. No imports beyond the standard library, so any layer may use it."""

# clean: pixel standard deviation (0-255 scale, on the 48x48 image) under which an image
# counts as blank. On FER-2013 the 12 all-black images have 0, a flat gray one 0.65 and a
# black frame with one bright speck 4.1; the darkest real face has 9.1 (docs/clean.md).
BLANK_STD = 5.0

# --- predict (predict-dir, predict-video, fercli.Predictor) ----------------------------------

# --- clean -----------------------------------------------------------------------------------

# --- train, evaluate, export -----------------------------------------------------------------
