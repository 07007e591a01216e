"""`fercli predict-video FILE...`: the emotion of every face in sampled video frames, each
face followed from frame to frame as a numbered track (docs/video.md)."""

import click

from fercli import defaults
from fercli.commands.face_options import abstain_option, face_filter_options
from fercli.commands.ray_options import ray_options
from fercli.faces.detect import DEFAULT_DETECTOR
from fercli.predict.bundled import model_help


@click.command("predict-video")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--fps",
    default=defaults.FPS,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Frames per second to sample from each video; 0: every frame.",
)
@click.option(
    "-o",
    "--output",
    default="video_predictions.csv",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Output file: .csv, or .jsonl for JSON Lines.",
)
@click.option(
    "--timeline",
    type=click.Path(dir_okay=False),
    help="Also draw each emotion over time to this PNG: one panel per video and track "
    "(smoothed with --smooth).",
)
@click.option(
    "--summary",
    type=click.Path(dir_okay=False),
    help="Also write a JSON summary: per video and track, first and last time, frames, mean "
    "probabilities and the dominant emotion.",
)
@click.option(
    "--smooth",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Smooth each track's probabilities over time (a moving average with this time "
    "constant) for --timeline and the summary's label counts; 0: off. The rows keep the raw "
    "values (see --smoothed-columns).",
)
@click.option(
    "--smoothed-columns",
    is_flag=True,
    help="With --smooth: the rows also get smoothed_label, smoothed_confidence and the "
    "smoothed probabilities.",
)
@click.option(
    "--track-gap",
    default=defaults.TRACK_GAP,
    show_default=True,
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="How long a track waits for a face it lost (at least 2 sampled frames); a person "
    "seen again later gets a new track number.",
)
@click.option(
    "--redetect",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Look for faces in the whole frame only every SECONDS; in the frames between, only "
    "around each track's expected place (several times faster at a high --fps, e.g. --fps 0; "
    "a new face is found at the next whole-frame look). 0: the whole of every frame.",
)
@click.option("--model", metavar="NAME|FILE", help=model_help())
@click.option(
    "--provider",
    type=click.Choice(defaults.PROVIDERS),
    default=defaults.PROVIDER,
    show_default=True,
)
@click.option(
    "--detector",
    default=DEFAULT_DETECTOR,
    show_default=True,
    help="Face detector (see `fercli plugins`).",
)
@face_filter_options
@abstain_option
@click.option("--topk", default=defaults.TOPK, show_default=True, type=click.IntRange(0))
@click.option("--strict", is_flag=True, help="Exit with status 2 if any video cannot be read.")
@click.option("--threads", type=click.IntRange(1), help="onnxruntime threads [default: all cores].")
@ray_options(
    "Where the videos are read, their faces found, tracked and predicted: here, or on a Ray "
    "cluster with Ray Data (fercli[ray]), one video per actor call; the output is the same, "
    "byte for byte, every option alike. On a cluster the videos must be at the same path on "
    "every node, with fercli[video] and a plugin --detector installed there.",
    "Ray actors, one onnxruntime session and detector each, one video at a time [default: "
    "the cluster's CPUs / threads].",
)
@click.option(
    "--threads-per-actor",
    default=defaults.THREADS_PER_ACTOR,
    show_default=True,
    type=click.IntRange(1),
    help="onnxruntime threads (and Ray CPUs) of each actor.",
)
def predict_video_command(
    files, output, model, strict, engine, ray_address, actors, threads_per_actor, **options
):
    """Find the faces in frames of each video FILE (sampled at --fps) and predict their
    emotion: one row per face with time, frame, face (left to right), track (the person,
    numbered from 0 in each video and followed across frames), box, face_score, face_size,
    label and probabilities; status=no_face for a frame without a face. Needs the `video`
    extra (PyAV). Details: docs/video.md.

    An unreadable video gets status=error with the reason, and the run goes on; it exits
    with status 2 when no video could be read at all (or, with --strict, any one)."""
    from fercli.errors import FercliError
    from fercli.predict.video import VideoOptions, predict_video
    from fercli.progress import say

    result = predict_video(
        files, output, model, VideoOptions(**options), engine=engine, ray_address=ray_address,
        actors=actors, threads_per_actor=threads_per_actor,
    )  # fmt: skip
    for path, reason in result.errors:
        say(f"  unreadable: {path!r}: {reason}")
    say(
        f"Wrote {result.output}: {result.faces} faces in {result.frames} frames of "
        f"{result.videos} video(s) ({result.tracks} tracks, {result.no_face} frames without "
        f"a face, {len(result.errors)} error(s)) in {result.seconds:.1f} s"
        + (f"; summary in {result.summary}" if result.summary else "")
        + (f"; timeline in {result.timeline}" if result.timeline else "")
    )
    if result.errors and result.frames == 0 and len(result.errors) == result.videos:
        raise FercliError(
            f"none of the {result.videos} video(s) could be read ("
            + "; ".join(f"{path}: {reason}" for path, reason in result.errors[:3])
            + ("; ..." if len(result.errors) > 3 else "")
            + f"): status=error rows in {result.output}."
        )
    if strict and result.errors:
        raise FercliError(
            f"{len(result.errors)} of {result.videos} videos could not be read (status=error "
            f"rows in {result.output}); failing because of --strict."
        )
