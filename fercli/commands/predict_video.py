"""`fercli predict-video FILE...`: the emotion of every face in sampled video frames."""

import click

from fercli.bundled import model_help


@click.command("predict-video")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--fps",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Frames per second to sample from each video.",
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
    help="Also draw each emotion over time to this PNG.",
)
@click.option("--model", metavar="NAME|FILE", help=model_help())
@click.option(
    "--provider",
    type=click.Choice(["auto", "cpu", "cuda", "openvino"]),
    default="auto",
    show_default=True,
)
@click.option(
    "--detector", default="mtcnn", show_default=True, help="Face detector (see `fercli plugins`)."
)
@click.option("--topk", default=0, show_default=True, type=click.IntRange(0))
@click.option("--threads", type=click.IntRange(1), help="onnxruntime threads [default: all cores].")
def predict_video_command(files, fps, output, timeline, model, provider, detector, topk, threads):
    """Find the faces in frames of each video FILE (sampled at --fps) and predict their
    emotion: one row per face with time, frame, face, box, face_score, label and
    probabilities; status=no_face for a frame without a face. Needs the `video` extra (PyAV)."""
    from fercli.faces.video import predict_video
    from fercli.progress import say

    result = predict_video(
        files,
        output,
        model,
        fps=fps,
        detector=detector,
        provider=provider,
        threads=threads,
        timeline=timeline,
        topk=topk,
    )
    for path, reason in result.errors:
        say(f"  unreadable: {path!r}: {reason}")
    say(
        f"Wrote {result.output}: {result.faces} faces in {result.frames} frames of "
        f"{result.videos} video(s) ({result.no_face} frames without a face, "
        f"{len(result.errors)} error(s)) in {result.seconds:.1f} s"
        + (f"; timeline in {result.timeline}" if result.timeline else "")
    )
