"""Tiny models the tests save into tmp folders: random weights, real classes, seconds to build.

    save_tiny_vae(tmp / "trained" / "vae-beta1", beta=1.0)     # a β-VAE folder
    save_tiny_pipeline(tmp / "trained", judge=True)            # autoencoder, clip, ldm (+ judge)
"""
import numpy as np
import torch

from playground.data import captions
from playground.data import synthfaces as sf
from playground.diffusion import ScheduleConfig
from playground.models.autoencoder import AutoencoderConfig, KLAutoencoder
from playground.models.clip import CLIPConfig, TextImageCLIP
from playground.models.judge import Judge, JudgeConfig
from playground.models.unet import LatentUNet, UNetConfig
from playground.models.vae import BetaVAE, VAEConfig
from playground.store import checkpoints

TINY_VAE = dict(latent_dim=8, channels=(8, 16, 16, 16))


def save_tiny_vae(folder, beta=4.0, seed=0):
    """A random-initialised tiny β-VAE saved as a model folder; returns the model."""
    torch.manual_seed(seed)
    model = BetaVAE(VAEConfig(beta=beta, **TINY_VAE))
    checkpoints.save_model(folder, model, metrics={"beta": beta})
    return model


TINY_T = 20  # diffusion steps of the tiny schedule (DDPM runs all of them)
TINY_CONTEXT = 16  # tokens per prompt of the tiny CLIP (so a prompt can be cut)


def _known_tokens(clip: TextImageCLIP) -> tuple[int, ...]:
    """Token ids of 200 SynthFaces training captions (what a trained CLIP records)."""
    factors = sf.generate_factors(200, 0)
    texts = captions.captions_for_dataset(sf.attributes_from_factors(factors), factors, seed=0)
    return tuple(sorted(set(clip.tokenize(texts).unique().tolist())))


def tiny_models(seed: int = 0, num_timesteps: int = TINY_T):
    """(autoencoder, clip, unet): random tiny models; the U-Net's zero-initialised layers get
    random weights, so its ε depends on x_t, t and the prompt (a fresh one predicts ε = 0)."""
    torch.manual_seed(seed)
    autoencoder = KLAutoencoder(AutoencoderConfig(latent_size=8, channels=(8, 8, 8, 8)))
    clip_config = dict(embed_dim=16, patch_size=16, vision_width=16, vision_layers=1,
                       vision_head_width=8, context_length=TINY_CONTEXT, text_width=16,
                       text_heads=2, text_layers=1)
    clip = TextImageCLIP(CLIPConfig(**clip_config))
    clip = TextImageCLIP(CLIPConfig(**clip_config, known_tokens=_known_tokens(clip)))
    unet = LatentUNet(UNetConfig(sample_size=8, channels=(8, 16), attention_levels=(1,),
                                 head_dim=8, context_dim=16, autoencoder="autoencoder",
                                 text_encoder="clip",
                                 schedule=ScheduleConfig(num_timesteps=num_timesteps)))
    with torch.no_grad():
        for p in unet.parameters():
            if not p.abs().max() > 0:
                p.normal_(0.0, 0.3)
    return autoencoder, clip, unet


def save_tiny_pipeline(trained, name: str = "ldm", seed: int = 0, judge: bool = False,
                       num_timesteps: int = TINY_T):
    """Save a tiny autoencoder, CLIP and U-Net (called `name`, with a schedule of
    `num_timesteps`) under `trained` (and a tiny judge with `judge`); returns the U-Net folder."""
    autoencoder, clip, unet = tiny_models(seed, num_timesteps)
    checkpoints.save_model(trained / "autoencoder", autoencoder)
    checkpoints.save_model(trained / "clip", clip)
    if judge:
        torch.manual_seed(seed)
        checkpoints.save_model(trained / "judge",
                               Judge(JudgeConfig(channels=(8, 8, 16, 16), feature_dim=16)))
    return checkpoints.save_model(trained / name, unet)


# the β-VAE trainer on random faces: exact replay (fp32, contiguous), tiny widths
EXACT = dict(amp="none", layout="contiguous")
# (a constant lr: a cosine's lr depends on the run's limits, and exact-replay tests compare runs
# that stop at different steps)
TINY_TRAIN = dict(batch_size=16, channels=(8, 8, 8, 8), latent_dim=8, eval_size=16, log_every=1,
                  progress=False, lr_schedule="constant", **EXACT)


class RandomFaces(torch.utils.data.Dataset):
    """Random uint8 images with the SynthFaces item format."""

    def __init__(self, n, seed=0, expose_images=True):
        images = np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
        if expose_images:
            self.images = images
        self._images = images

    def __len__(self):
        return len(self._images)

    def __getitem__(self, i):
        image = torch.from_numpy(self._images[i]).permute(2, 0, 1).float() / 255
        return {"image": image, "attributes": torch.zeros(2), "index": i}


TINY_CLIP = dict(embed_dim=8, patch_size=16, vision_width=16, vision_layers=1,
                 vision_head_width=8, context_length=24, text_width=16, text_heads=2,
                 text_layers=1)


def tiny_clip(seed: int = 0, **overrides) -> TextImageCLIP:
    """A random tiny CLIP in eval mode (`overrides`: CLIPConfig fields)."""
    torch.manual_seed(seed)
    return TextImageCLIP(CLIPConfig(**{**TINY_CLIP, **overrides})).eval()
