"""The options that choose which faces count, for every command that finds faces
(predict-dir, predict-video): one definition, the same words and defaults for both."""

import click

# Defaults keep every face the detector reports (the behaviour before these options).
DEFAULT_MIN_FACE_SCORE = 0.0
DEFAULT_MIN_FACE_SIZE = 0


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
        default=DEFAULT_MIN_FACE_SCORE,
        show_default=True,
        help="Leave out faces the detector scores below this (the face_score column).",
    )(command)
