"""The options that choose which faces count, for every command that finds faces
(predict-dir, predict-video): one definition, the same words and defaults for both."""

import click

from fercli import defaults
from fercli.faces.detect import DEFAULT_MIN_FACE_SIZE


def face_filter_options(command):
    """--min-face-score and --min-face-size."""
    command = click.option(
        "--min-face-size",
        type=click.IntRange(0),
        default=DEFAULT_MIN_FACE_SIZE,
        show_default=True,
        help="Leave out faces whose box's shorter side (the face_size column) is smaller than "
        "this many pixels of the picture.",
    )(command)
    return click.option(
        "--min-face-score",
        type=click.FloatRange(0, 1),
        default=defaults.MIN_FACE_SCORE,
        show_default="the detector's own: yunet 0.6, mtcnn 0.95",
        help="Leave out faces the detector scores below this (the face_score column); each "
        "detector scores on its own scale.",
    )(command)


def abstain_option(command):
    """--abstain P, for predict-dir and predict-video."""
    return click.option(
        "--abstain",
        type=click.FloatRange(0, 1, max_open=True),
        default=defaults.ABSTAIN,
        show_default=True,
        metavar="P",
        help="Label a face `uncertain` where its top probability (the confidence column) is "
        "below P; the probabilities are written all the same. 0: off. Pick P from `fercli "
        "evaluate --coverage-plot` (the accuracy of the faces answered, against their share).",
    )(command)
