"""What a model's predictions score, pure numpy: `classification` (accuracy, recall, the
confusion matrix), `calibration` (temperature, ECE, reliability, risk and coverage), and
`plots`, the figures of both and of training runs and videos."""
