"""Helpers the training tests share."""


def interrupt_at(monkeypatch, epoch: int):
    """Make training stop as Ctrl-C would at the start of `epoch`; returns the undo."""
    from fercli.training import epoch as training

    real_epoch = training.train_epoch

    def interrupted(*args):
        if args[-1] == epoch:  # the epoch number
            raise KeyboardInterrupt
        return real_epoch(*args)

    monkeypatch.setattr(training, "train_epoch", interrupted)
    return lambda: monkeypatch.setattr(training, "train_epoch", real_epoch)
