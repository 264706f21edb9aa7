"""MFCCs in torch, batched, on any device; mel filterbank from librosa.

`mfcc` follows `librosa.feature.mfcc` (power mel spectrogram -> dB -> DCT-II ortho), except that
`top_db` is applied per example, so a batch gives the same numbers as one example at a time.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class MfccSpec:
    sr: int
    n_fft: int
    hop: int
    n_mels: int
    n_mfcc: int
    fmin: float = 0.0
    fmax: float | None = None
    htk: bool = False
    mel_norm: str | None = "slaney"
    top_db: float | None = 80.0
    log: str = "power_db"  # "power_db": 10*log10(power); "amplitude_db": torchaudio's 20*log10 on power
    circular: bool = True  # one looping bar: pad by wrapping around, n_frames = samples // hop
    pad_mode: str = "constant"  # when not circular: librosa-style centred frames


class MfccTransform:
    """Precomputed window, mel basis and DCT for one spec on one device."""

    def __init__(self, spec: MfccSpec, device):
        import librosa

        self.spec = spec
        self.device = torch.device(device)
        self.window = torch.hann_window(spec.n_fft, periodic=True, device=self.device)
        with warnings.catch_warnings():
            # The paper's 128 mels on a 400-point FFT leave some bands empty; that is its design.
            warnings.filterwarnings("ignore", message="Empty filters detected")
            mel = librosa.filters.mel(sr=spec.sr, n_fft=spec.n_fft, n_mels=spec.n_mels, fmin=spec.fmin,
                                      fmax=spec.fmax, htk=spec.htk, norm=spec.mel_norm)
        self.mel = torch.from_numpy(mel.astype(np.float32)).to(self.device)  # [n_mels, n_bins]
        self.dct = dct_matrix(spec.n_mels, spec.n_mfcc).to(self.device)  # [n_mfcc, n_mels]

    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        return mfcc(audio, self.spec, self.window, self.mel, self.dct)


def dct_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """Orthonormal DCT-II as a matrix `[n_out, n_in]` (scipy.fft.dct(norm='ortho'))."""
    n = torch.arange(n_in, dtype=torch.float64)
    k = torch.arange(n_out, dtype=torch.float64)[:, None]
    basis = torch.cos(torch.pi / n_in * (n + 0.5) * k) * np.sqrt(2.0 / n_in)
    basis[0] /= np.sqrt(2.0)
    return basis.float()


def power_spectrogram(audio: torch.Tensor, spec: MfccSpec, window: torch.Tensor) -> torch.Tensor:
    """float `[batch, samples]` -> power `[batch, n_bins, frames]`."""
    half = spec.n_fft // 2
    if spec.circular:
        # Wrap-around padding, then drop the last frame (it repeats the first): frames == samples // hop
        padded = torch.cat([audio[:, -half:], audio, audio[:, :half]], dim=1)
        n_frames = audio.shape[1] // spec.hop
        stft = torch.stft(padded, spec.n_fft, spec.hop, window=window, center=False, return_complex=True)
        stft = stft[..., :n_frames]
    else:
        stft = torch.stft(audio, spec.n_fft, spec.hop, window=window, center=True,
                          pad_mode=spec.pad_mode, return_complex=True)
    return stft.real.square() + stft.imag.square()


def to_db(power: torch.Tensor, spec: MfccSpec) -> torch.Tensor:
    """librosa.power_to_db (ref=1, amin=1e-10), top_db relative to each example's max."""
    scale = 20.0 if spec.log == "amplitude_db" else 10.0
    db = scale * torch.log10(torch.clamp(power, min=1e-10))
    if spec.top_db is not None:
        peak = db.amax(dim=tuple(range(1, db.ndim)), keepdim=True)
        db = torch.maximum(db, peak - spec.top_db)
    return db


def mfcc(audio: torch.Tensor, spec: MfccSpec, window: torch.Tensor, mel: torch.Tensor,
         dct: torch.Tensor) -> torch.Tensor:
    """float `[batch, samples]` -> MFCC `[batch, n_mfcc, frames]` (window, mel, dct on audio's device)."""
    power = power_spectrogram(audio, spec, window)
    mel_power = torch.matmul(mel, power)  # [batch, n_mels, frames]
    return torch.matmul(dct, to_db(mel_power, spec))
