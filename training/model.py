"""The emergence classifiers: VGG-style CNNs on one patch video, a 3-D one and the authors' frames-as-channels 2-D one.

Input: ``(batch, 1, n_frames, pixels, pixels)`` float32, the video scaled by
:func:`common.video.scale_for_model` (0 = −clip, 0.5 = 0 G, 1 = +clip), axes
(time, latitude, longitude). Output: ``(batch,)`` logits of "emergence"; the
probability is ``sigmoid(logit)`` (the ONNX export includes the sigmoid).

Architecture (the paper's Fig. 1, sized for CPUs): for each entry of
``channels`` a 3×3×3 convolution, swish (SiLU) and a max-pool halving
latitude and longitude, and time while at least 4 time steps are left (so
short test videos keep their order of events); the first convolution is
strided in time (``time_stride``) to cut the cost of 225-frame videos
(time steps 225 → 75 → 37 → 18 → 9 → 4). Then two fully connected swish
layers, each followed by dropout (0.5 in the paper), and one output unit.
Weights are He-initialised. Defaults: 793,473 parameters at 225×90×90;
about 1.0 s per forward + backward of a batch of 10 on 2 CPU cores.

Two departures from the paper, off by default, make the model learn from
crude labels in the few epochs a CPU allows: ``batch_norm`` (batch
normalisation after each convolution: quiet-Sun fields are only a few
hundredths of the ±1000 G clip, and without it the first epochs barely move
the weights) and ``input_pool`` (a 2×2 average of the 90×90 frames first:
bipoles span many pixels, and every layer is then 4× cheaper).

:class:`EmergenceCNN2D` is the authors' network (github subhamoysgit/flux_emergence,
the notebooks' Keras ``Sequential``): the T frames are the channels of a 2-D
VGG net. Four blocks of two 3×3 convolutions (32, 64, 128, 256 channels),
each convolution followed by swish and then batch normalisation, and a 2×2
max-pool; the first block pads ("same"), the others do not (90 → 45 → 20 →
8 → 2 pixels); a convolution over the remaining 2×2 pixels to 512 channels and
swish; then dense 512, swish, dropout 0.5, dense 512, swish, dropout 0.5, and
one output unit. Weights Glorot-uniform, biases zero, batch normalisation with
Keras's momentum 0.99 and ε = 10⁻³ (Keras's defaults). 2,288,737 parameters
at 225×90×90. Its first convolution is linear in the frames, which lets
serving score masked videos incrementally (:mod:`serving.streaming`).

Both take the same input and recentre it the same way; :func:`model_from_hparams`
rebuilds either from its ``hparams`` (which name the ``architecture``; a
checkpoint from before the 2-D net has none and is 3-D).
"""
from __future__ import annotations

import torch
from torch import nn

from common.video import recentre


class EmergenceCNN(nn.Module):
    """VGG-style 3D CNN: scaled patch video → emergence logit.

    Parameters
    ----------
    n_frames : frames per video (225 in the paper; any T ≥ 2).
    pixels : side of a frame in pixels (90).
    channels : output channels of the successive conv + pool blocks.
    fc : widths of the two hidden fully connected layers.
    time_stride : stride of the first convolution along time (frames).
    dropout : dropout rate after each hidden fully connected layer.
    batch_norm : batch normalisation after each convolution.
    input_pool : average the frames over 2×2 pixels before the first convolution.
    """

    def __init__(self, n_frames: int = 225, pixels: int = 90, channels: tuple[int, ...] = (8, 16, 32, 64),
                 fc: tuple[int, int] = (112, 32), time_stride: int = 3, dropout: float = 0.5,
                 batch_norm: bool = False, input_pool: bool = False):
        super().__init__()
        if n_frames < 2 or pixels < 2 ** (len(channels) + bool(input_pool)):
            raise ValueError(f"video {n_frames}×{pixels}×{pixels} is too small for {len(channels)} pooling blocks")
        self.hparams = {"architecture": "3d", "n_frames": int(n_frames), "pixels": int(pixels), "channels": tuple(int(c) for c in channels),
                        "fc": tuple(int(f) for f in fc), "time_stride": int(time_stride), "dropout": float(dropout),
                        "batch_norm": bool(batch_norm), "input_pool": bool(input_pool)}
        blocks: list[nn.Module] = [nn.AvgPool3d((1, 2, 2))] if input_pool else []
        c_in, t, p = 1, int(n_frames), int(pixels) // (2 if input_pool else 1)
        for i, c_out in enumerate(channels):
            stride = (time_stride, 1, 1) if i == 0 else (1, 1, 1)
            blocks.append(nn.Conv3d(c_in, c_out, kernel_size=3, stride=stride, padding=1))
            blocks += [nn.BatchNorm3d(c_out), nn.SiLU()] if batch_norm else [nn.SiLU()]
            t = (t - 1) // stride[0] + 1
            kt = 2 if t >= 4 else 1  # keep at least two time steps: the order of events matters
            blocks.append(nn.MaxPool3d((kt, 2, 2)))
            t, p, c_in = t // kt, p // 2, c_out
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * t * p * p, fc[0]), nn.SiLU(), nn.Dropout(dropout),
            nn.Linear(fc[0], fc[1]), nn.SiLU(), nn.Dropout(dropout),
            nn.Linear(fc[1], 1),
        )
        for layer in self.modules():
            if isinstance(layer, (nn.Conv3d, nn.Linear)):
                # He initialisation keeps activation scale through the swish stack.
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``video`` (batch, 1, T, pixels, pixels) in [0, 1] → logits (batch,).

        The input is recentred to B/clip ∈ [−1, 1] first (:func:`common.video.recentre`),
        so that the convolutions' zero padding means 0 G.
        """
        return self.classifier(self.features(recentre(video))).squeeze(-1)


class EmergenceCNN2D(nn.Module):
    """The authors' VGG-style 2-D CNN with the frames as channels: scaled patch video → emergence logit.

    Parameters
    ----------
    n_frames : frames per video, the first convolution's input channels (225 in the paper).
    pixels : side of a frame in pixels (90).
    channels : output channels of the successive blocks (two 3×3 convolutions and a 2×2 max-pool each).
    conv_out : channels of the last convolution, whose kernel covers the remaining pixels (2×2 at 90 px).
    fc : widths of the two hidden dense layers.
    dropout : dropout rate after each hidden dense layer.

    ``first`` is the first convolution (T → channels[0], 3×3, zero padded), ``body``
    everything from its swish to the last convolution's swish, ``classifier`` the
    dense layers: ``forward = classifier(body(first(frames)))``.
    """

    def __init__(self, n_frames: int = 225, pixels: int = 90, channels: tuple[int, ...] = (32, 64, 128, 256),
                 conv_out: int = 512, fc: tuple[int, int] = (512, 512), dropout: float = 0.5):
        super().__init__()
        p = int(pixels)
        for i in range(len(channels)):
            p = (p - (0 if i == 0 else 4)) // 2  # "same" convolutions in the first block, "valid" ones after
            if p < 1:
                raise ValueError(f"video {n_frames}×{pixels}×{pixels} is too small for {len(channels)} blocks")
        if n_frames < 1:
            raise ValueError(f"need at least one frame, got {n_frames}")
        self.hparams = {"architecture": "2d", "n_frames": int(n_frames), "pixels": int(pixels),
                        "channels": tuple(int(c) for c in channels), "conv_out": int(conv_out),
                        "fc": tuple(int(f) for f in fc), "dropout": float(dropout)}

        def norm(c: int) -> nn.BatchNorm2d:
            return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)  # Keras: momentum 0.99 of the running average

        self.first = nn.Conv2d(int(n_frames), channels[0], 3, padding=1)
        layers: list[nn.Module] = [nn.SiLU(), norm(channels[0])]
        c_in = channels[0]
        for i, c_out in enumerate(channels):
            padding = 1 if i == 0 else 0
            if i > 0:
                layers += [nn.Conv2d(c_in, c_out, 3, padding=padding), nn.SiLU(), norm(c_out)]
            layers += [nn.Conv2d(c_out, c_out, 3, padding=padding), nn.SiLU(), norm(c_out), nn.MaxPool2d(2)]
            c_in = c_out
        layers += [nn.Conv2d(c_in, conv_out, p), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(conv_out, fc[0]), nn.SiLU(), nn.Dropout(dropout),
            nn.Linear(fc[0], fc[1]), nn.SiLU(), nn.Dropout(dropout),
            nn.Linear(fc[1], 1),
        )
        for layer in self.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(layer.weight)  # Keras's glorot_uniform
                nn.init.zeros_(layer.bias)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``video`` (batch, 1, T, pixels, pixels) in [0, 1] → logits (batch,).

        Recentred to B/clip ∈ [−1, 1] as :class:`EmergenceCNN` does; the T frames become the channels.
        """
        return self.classifier(self.body(self.first(recentre(video)[:, 0]))).squeeze(-1)


#: The architectures by the name that ``hparams["architecture"]`` and :class:`training.train.TrainConfig` use.
ARCHITECTURES: dict[str, type[nn.Module]] = {"3d": EmergenceCNN, "2d": EmergenceCNN2D}


def model_from_hparams(hparams: dict) -> nn.Module:
    """A model of the architecture and shape in ``hparams`` (a model's ``hparams``; without "architecture": 3-D)."""
    kwargs = dict(hparams)
    return ARCHITECTURES[kwargs.pop("architecture", "3d")](**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
