"""fercli: facial-expression recognition from the command line."""

__version__ = "0.1.0"

# FER-2013's seven emotions, in the order every fercli model and report uses.
FER_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
