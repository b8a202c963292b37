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

:class:`EmergenceCausal` answers the service's question instead of the
paper's: one pass over a video gives a logit at every frame, and the logit
at frame n depends on frames ≤ n only. A per-frame encoder sees frame n
beside frame n − ``lag`` (what changed over hours, signed and unsigned), and
a causal temporal head (dilated convolutions over the last ``receptive``
frames' encodings) turns the sequence into "has a region begun to emerge
here by frame n". Its ``forward`` is its largest logit over the frames (did
a region begin to emerge at any time in this video?), so the video-level code
(relabel loop, threshold, test) treats it like the others;
:meth:`EmergenceCausal.frame_logits` is what it is trained on and what the
service streams.
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


class FrameEncoder(nn.Module):
    """One frame beside the frame ``lag`` earlier → a feature vector.

    Input ``pair`` (N, 2, P, P): recentred frame n and frame n − lag (B/clip). Both are averaged over
    ``pool``×``pool`` pixels; the encoder sees four maps (B, its change, |B|, the change of |B|) and
    their tile means, through three 3×3 convolution blocks (batch norm, swish; 2×2 max-pools after the
    first two), pooled over the tile (maximum and mean) and mapped to ``features`` values.
    """

    def __init__(self, pool: int, channels: tuple[int, int, int], features: int):
        super().__init__()
        self.pool = nn.AvgPool2d(pool)
        c1, c2, c3 = channels
        self.convs = nn.Sequential(
            nn.Conv2d(4, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1), nn.BatchNorm2d(c3), nn.SiLU())
        self.out = nn.Sequential(nn.BatchNorm1d(2 * c3 + 4), nn.Linear(2 * c3 + 4, features), nn.SiLU())

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        now, before = self.pool(pair[:, :1]), self.pool(pair[:, 1:])
        maps = torch.cat([now, now - before, now.abs(), now.abs() - before.abs()], dim=1)
        h = self.convs(maps)
        return self.out(torch.cat([h.amax(dim=(2, 3)), h.mean(dim=(2, 3)), maps.mean(dim=(2, 3))], dim=1))


class CausalHead(nn.Module):
    """Encodings of consecutive frames (N, F, L) → a logit per frame (N, L − receptive + 1).

    Unpadded ("valid") dilated convolutions of kernel 3, dilations 1, 2, 4, …, each with a swish and a
    residual connection: the output at step j reads steps j .. j + receptive − 1 of the input, the last
    of them its own frame.
    """

    def __init__(self, features: int, hidden: int, dilations: tuple[int, ...], dropout: float):
        super().__init__()
        self.inp = nn.Sequential(nn.Dropout(dropout), nn.Conv1d(features, hidden, 1), nn.SiLU())
        self.dilations = tuple(dilations)
        self.layers = nn.ModuleList(nn.Conv1d(hidden, hidden, 3, dilation=d) for d in self.dilations)
        self.out = nn.Conv1d(hidden, 1, 1)

    @property
    def receptive(self) -> int:
        """Frames each output reads: 1 + 2·Σ dilations."""
        return 1 + 2 * sum(self.dilations)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        h = self.inp(features)
        for d, conv in zip(self.dilations, self.layers):
            h = h[..., 2 * d :] + nn.functional.silu(conv(h))
        return self.out(h)[:, 0]


class EmergenceCausal(nn.Module):
    """Causal per-frame emergence detector: scaled patch video → a logit at every frame.

    Parameters
    ----------
    n_frames : frames per video (225).
    pixels : side of a frame in pixels (90).
    lag : frames between a frame and the earlier one it is compared with (4: 6.4 h at 96 min).
    pool : pixels averaged (``pool``×``pool``) before the encoder's convolutions.
    channels : the encoder's three convolution widths.
    features : the length of one frame's encoding.
    hidden : the temporal head's width.
    dilations : the temporal head's dilations; the head reads ``1 + 2·Σ dilations`` frames.
    dropout : dropout on the encodings while training.

    Before frame 0 the video is its first frame (so the first ``lag`` changes are 0), and the head's
    window is padded with zero encodings: frame n's logit is the head on the encodings of frames
    n − receptive + 1 .. n, zeros where those are < 0. That is exactly what a stream computes
    (:class:`serving.streaming.CausalMember`).
    """

    def __init__(self, n_frames: int = 225, pixels: int = 90, lag: int = 4, pool: int = 3,
                 channels: tuple[int, int, int] = (8, 16, 16), features: int = 24, hidden: int = 32,
                 dilations: tuple[int, ...] = (1, 2, 4, 8, 16), dropout: float = 0.1):
        super().__init__()
        if pixels // pool < 4 or n_frames < 1 or lag < 1:
            raise ValueError(f"video {n_frames}×{pixels}×{pixels} with lag {lag} and pool {pool} is too small")
        self.hparams = {"architecture": "causal", "n_frames": int(n_frames), "pixels": int(pixels), "lag": int(lag),
                        "pool": int(pool), "channels": tuple(int(c) for c in channels), "features": int(features),
                        "hidden": int(hidden), "dilations": tuple(int(d) for d in dilations), "dropout": float(dropout)}
        self.lag = int(lag)
        self.encoder = FrameEncoder(pool, (int(channels[0]), int(channels[1]), int(channels[2])), features)
        self.head = CausalHead(features, hidden, tuple(int(d) for d in dilations), dropout)
        for layer in self.modules():
            if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)

    @property
    def receptive(self) -> int:
        return self.head.receptive

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Recentred frames (N, T, P, P) → encodings (N, features, T), each frame beside the one ``lag`` before."""
        n, t = frames.shape[:2]
        before = torch.cat([frames[:, :1].expand(n, min(self.lag, t), *frames.shape[2:]), frames[:, : max(t - self.lag, 0)]], 1)
        pairs = torch.stack([frames, before], dim=2).flatten(0, 1)
        return self.encoder(pairs).unflatten(0, (n, t)).transpose(1, 2)

    def frame_logits(self, video: torch.Tensor) -> torch.Tensor:
        """``video`` (batch, 1, T, pixels, pixels) in [0, 1] → logits (batch, T), frame n's from frames ≤ n."""
        encodings = self.encode(recentre(video)[:, 0])
        return self.head(nn.functional.pad(encodings, (self.receptive - 1, 0)))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """The largest logit over the frames (batch,): did a region begin to emerge in this video?"""
        return self.frame_logits(video).amax(dim=1)


#: The architectures by the name that ``hparams["architecture"]`` and :class:`training.train.TrainConfig` use.
ARCHITECTURES: dict[str, type[nn.Module]] = {"3d": EmergenceCNN, "2d": EmergenceCNN2D, "causal": EmergenceCausal}


def model_from_hparams(hparams: dict) -> nn.Module:
    """A model of the architecture and shape in ``hparams`` (a model's ``hparams``; without "architecture": 3-D)."""
    kwargs = dict(hparams)
    return ARCHITECTURES[kwargs.pop("architecture", "3d")](**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
