#!/usr/bin/env python
"""Export facenet-pytorch's MTCNN weights (MIT, Timothy Esler; converted from Kaipeng Zhang's
original MTCNN, MIT) to the three ONNX files fercli ships in fercli/faces/weights/mtcnn/.

    pip download --no-deps facenet-pytorch==2.6.0 -d /tmp/fp && unzip /tmp/fp/*.whl -d /tmp/fp
    python scripts/export_mtcnn_onnx.py /tmp/fp/facenet_pytorch/data fercli/faces/mtcnn

The networks are redefined here (same layer names as facenet_pytorch.models.mtcnn, so the
state dicts load as they are); facenet-pytorch itself is not imported. Inputs are
(N, 3, H, W) RGB scaled as (x - 127.5) / 128; P-Net takes any H, W >= 12, R-Net 24x24,
O-Net 48x48. Outputs: P-Net `reg` (N, 4, h, w) and `prob` (N, 2, h, w); R-Net `reg` (N, 4)
and `prob` (N, 2); O-Net `reg`, `landmarks` (N, 10: five x then five y, in the box) and
`prob`. Needs torch (the train extra) and onnx; a check compares onnxruntime with torch.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn


class PNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x):
        x = self.prelu1(self.conv1(x))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


class RNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)  # the Caffe weights' order
        x = self.prelu4(self.dense4(x))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
        x = self.prelu5(self.dense5(x))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


NETS = {
    "pnet": (PNet, (1, 3, 37, 53), ["reg", "prob"], {0: "n", 2: "h", 3: "w"}),
    "rnet": (RNet, (2, 3, 24, 24), ["reg", "prob"], {0: "n"}),
    "onet": (ONet, (2, 3, 48, 48), ["reg", "landmarks", "prob"], {0: "n"}),
}


def export(weights: Path, out: Path) -> None:
    import onnxruntime as ort

    out.mkdir(parents=True, exist_ok=True)
    for name, (cls, shape, outputs, input_axes) in NETS.items():
        net = cls().eval()
        state = torch.load(weights / f"{name}.pt", map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        x = torch.randn(*shape)
        path = out / f"{name}.onnx"
        dynamic = {"input": input_axes}
        for o in outputs:
            dynamic[o] = {0: "n", 2: "h", 3: "w"} if name == "pnet" else {0: "n"}
        torch.onnx.export(
            net,
            (x,),
            str(path),
            input_names=["input"],
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=17,
            dynamo=False,
        )
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        with torch.no_grad():
            want = [t.numpy() for t in net(x)]
        got = session.run(None, {"input": x.numpy()})
        err = max(float(np.abs(a - b).max()) for a, b in zip(want, got))
        print(f"{path}: {path.stat().st_size} bytes, max |onnxruntime - torch| = {err:.2e}")
        assert err < 1e-4, name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", type=Path, help="folder with pnet.pt, rnet.pt, onet.pt")
    parser.add_argument("out", type=Path, help="folder for pnet.onnx, rnet.onnx, onet.onnx")
    args = parser.parse_args()
    export(args.weights, args.out)


if __name__ == "__main__":
    main()
