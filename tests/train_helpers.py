"""Helpers the training tests share."""


def interrupt_at(monkeypatch, epoch: int):
    """Make training stop as Ctrl-C would at the start of `epoch`; returns the undo."""
    from fercli.train import epoch as training

    real_epoch = training.train_epoch

    def interrupted(*args):
        if args[-1] == epoch:  # the epoch number
            raise KeyboardInterrupt
        return real_epoch(*args)

    monkeypatch.setattr(training, "train_epoch", interrupted)
    return lambda: monkeypatch.setattr(training, "train_epoch", real_epoch)


def validation_accuracy(checkpoint: dict, data_dir) -> float:
    """The accuracy of a checkpoint's weights on the validation hold-out of `data_dir` (the
    default --val-fraction and --split-seed), computed afresh."""
    import torch

    from fercli.train import TrainConfig
    from fercli.train.checkpoint import build_model
    from fercli.train.data import load_data, predict_logits

    data = load_data(TrainConfig(data_dir=str(data_dir)))
    logits = predict_logits(build_model(checkpoint), data.x_val, torch.device("cpu"))
    return (logits.argmax(1) == data.y_val).float().mean().item()
