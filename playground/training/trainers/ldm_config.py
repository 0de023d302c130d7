"""What one latent-diffusion U-Net training run is: `LDMTrainConfig` (saved in train_state.json
as "args"), checked when it is made, and which of its fields a resumed run must keep."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Sequence

from playground.diffusion.schedule import SCHEDULE_KINDS, ScheduleConfig
from playground.models.unet import SPACES, UNetConfig
from playground.store.checkpoints import runs_dir
from playground.training import StartAndSpeed, check_run_options

LOSS_WEIGHTINGS = ("uniform", "min_snr")  # see `playground.training.trainers.ldm.min_snr_weights`


@dataclass
class LDMTrainConfig(StartAndSpeed):
    """One LDM training run (saved in train_state.json as "args")."""

    autoencoder: str = "autoencoder"  # first-stage KLAutoencoder: model name or folder (latent space)
    clip: str = "clip"  # TextImageCLIP whose per-token text states condition the U-Net: name or folder
    space: str = "latent"  # "latent" (autoencoder latents) or "pixel" (64×64 images in [-1, 1])
    channels: tuple[int, ...] = (48, 96, 144)  # U-Net width per level (~107 img/s bf16, 1 thread)
    num_res_blocks: int = 1  # ResBlocks per level on the way down
    attention_levels: tuple[int, ...] = (1, 2)  # levels with self-/cross-attention (8×8 and 4×4 of a 16×16 latent)
    head_dim: int = 32  # channels per attention head
    text_words: bool = True  # context = the CLIP's final states ‖ the words' input embeddings
    # (without them this U-Net never learned glasses, beards or smiles: see the trainer's docstring)
    cond_drop: float = 0.1  # probability that a caption is replaced by "" (classifier-free guidance)
    ema_decay: float = 0.999  # EMA decay of the shipped weights (warm-up min(d, (1+n)/(10+n)))
    schedule: str = "linear"  # noise schedule: "linear" (1e-4 → 0.02, Ho et al.) or "cosine"
    num_timesteps: int = 1000  # T
    probe_judge: str | None = "judge"  # judge of the prompt-accuracy probe (None: val loss only)
    probe_fd_samples: int = 256  # DDIM-20 samples of the probe's FD-judge from training captions (0: none)
    cache_latents: bool = True  # keep the training latents on disk, keyed by the autoencoder's weights
    loss_weighting: str = "uniform"  # "uniform" ε-MSE (Ho et al.) or "min_snr" (Hang et al. 2023)
    min_snr_gamma: float = 5.0  # γ of Min-SNR: weight min(SNR_t, γ) / SNR_t on each sample's ε-MSE
    dataset: str = "synthfaces"  # captions need SynthFaces' attributes and factors
    data_root: str | None = None  # SynthFaces cache folder
    epochs: int | None = None  # stop after this many epochs (10 if no minutes/max_steps given)
    minutes: float | None = None  # stop after this much training time, summed over resumes
    max_steps: int | None = None  # stop after this many optimizer steps in total (quick runs)
    batch_size: int = 64  # global batch, split evenly across DDP processes
    lr: float = 3e-4  # Adam learning rate (peak of the cosine schedule)
    lr_schedule: str = "cosine"  # "cosine" (to lr_min_ratio · lr at the end of the budget) or "constant"
    lr_min_ratio: float = 0.1  # final learning rate of the cosine schedule, as a fraction of lr
    device: str = "cpu"  # cpu, cuda, cuda:N or auto (CUDA if available)
    seed: int = 0  # initial weights, data order, t, ε and caption dropping
    train_size: int | None = None  # use the first N training images (None = the whole split)
    eval_size: int | None = 256  # validation images in the fixed val batch
    checkpoint_minutes: float = 2.0  # also checkpoint this often within an epoch
    log_every: int = 20  # a "train" line in log.jsonl every N steps
    num_workers: int = 2  # unused (all data are in memory); kept for the shared options
    threads: int | None = None  # CPU threads for torch (None = torch's default, all cores)
    progress: bool = True  # tqdm progress bar
    out: str | None = None  # run folder (default runs/ldm, or runs/ldm-pixel)
    MODEL_KIND: ClassVar[str] = "unet"
    ARCHITECTURE: ClassVar[tuple[str, ...]] = ("space", "channels", "num_res_blocks", "attention_levels",
                                               "head_dim", "text_words")

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        self.attention_levels = tuple(int(c) for c in self.attention_levels)
        check_run_options(self, counts=("batch_size", "log_every", "num_timesteps"),
                          choices={"space": SPACES, "schedule": SCHEDULE_KINDS,
                                   "dataset": ("synthfaces",),
                                   "loss_weighting": LOSS_WEIGHTINGS})
        if self.min_snr_gamma <= 0:
            raise ValueError(f"min_snr_gamma must be > 0, got {self.min_snr_gamma}")
        if not 0 <= self.cond_drop < 1:
            raise ValueError(f"cond_drop must be in [0, 1), got {self.cond_drop}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        self.model_config(context_dim=8)  # validates the architecture now

    def schedule_config(self) -> ScheduleConfig:
        return ScheduleConfig(num_timesteps=self.num_timesteps, kind=self.schedule)

    def model_config(self, context_dim: int, sample_shape: Sequence[int] | None = None,
                     autoencoder: str = "", text_encoder: str = "") -> UNetConfig:
        """The U-Net for samples of `sample_shape` (C, H, W) (default: 3×64×64 pixels or the
        4×16×16 latent) and text tokens of width `context_dim`."""
        if sample_shape is None:
            sample_shape = (3, 64, 64) if self.space == "pixel" else (4, 16, 16)
        c, h, w = sample_shape
        if h != w:
            raise ValueError(f"the U-Net needs square samples, got {tuple(sample_shape)}")
        return UNetConfig(in_channels=c, sample_size=h,
                          channels=self.channels, num_res_blocks=self.num_res_blocks,
                          attention_levels=self.attention_levels, head_dim=self.head_dim,
                          context_dim=context_dim, text_words=self.text_words,
                          space=self.space, autoencoder=autoencoder,
                          text_encoder=text_encoder, schedule=self.schedule_config())

    def out_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        return runs_dir() / ("ldm" if self.space == "latent" else "ldm-pixel")


# Changing these would make a resumed run a different run.
FIXED_ON_RESUME = ("autoencoder", "clip", "space", "channels", "num_res_blocks",
                   "attention_levels", "head_dim", "text_words", "cond_drop", "ema_decay", "schedule",
                   "num_timesteps", "dataset", "batch_size", "seed", "train_size", "eval_size")
