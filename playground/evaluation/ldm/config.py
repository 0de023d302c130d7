"""The settings of one LDM evaluation run: its prompts, sample counts, steps, scales and outputs."""
from __future__ import annotations

from dataclasses import dataclass

UNCONDITIONAL_PROMPT = ""  # the null condition the U-Net was trained with (condition dropout)
MAX_SAMPLES = 1000  # the "1,000 samples each"


@dataclass(frozen=True)
class PromptTarget:
    """A prompt of the guidance sweep and what the judge should see in its samples.

    ``targets`` are (attribute, expected 0/1) pairs, attribute names as the judge predicts them
    (CelebA names); a sample is correct when every one matches (hard prediction, p > 0.5).
    """

    prompt: str
    targets: tuple[tuple[str, int], ...]

    @property
    def attributes(self) -> dict[str, int]:
        return dict(self.targets)


# Worded exactly as `playground.data.captions` words a face with only these attributes (a test
# checks that each is one of its captions), so the text encoder has seen every word in place.
GUIDANCE_PROMPTS: tuple[PromptTarget, ...] = (
    PromptTarget("a smiling person", (("Smiling", 1),)),
    PromptTarget("a person with glasses", (("Eyeglasses", 1),)),
    PromptTarget("a person with blond hair", (("Blond_Hair", 1),)),
    PromptTarget("a person with black hair", (("Black_Hair", 1),)),
    PromptTarget("a person with gray hair", (("Gray_Hair", 1),)),
    # "a beard" is the caption of facial_hair = beard only (no mustache, no goatee)
    PromptTarget("a man with a beard", (("No_Beard", 0), ("Mustache", 0), ("Goatee", 0))),
    PromptTarget("a man with a goatee", (("Goatee", 1),)),
    PromptTarget("a man with a mustache", (("Mustache", 1),)),
    PromptTarget("a person, wearing a hat", (("Wearing_Hat", 1),)),
    PromptTarget("a bald person", (("Bald", 1),)),
    PromptTarget("a woman, wearing lipstick", (("Wearing_Lipstick", 1),)),
    PromptTarget("a person with pale skin", (("Pale_Skin", 1),)),
)

# Prompts no number was tuned on (`playground.evaluation.rehearsal`): the sweep's attributes in
# the captions' other words, and pairs of them. Every word is a caption word, but no prompt is
# one of the sweep's, and the pairs name two attributes where the sweep names one.
HELD_OUT_PROMPTS: tuple[PromptTarget, ...] = (
    PromptTarget("a grinning woman", (("Smiling", 1),)),
    PromptTarget("someone wearing spectacles", (("Eyeglasses", 1),)),
    PromptTarget("a face with golden hair", (("Blond_Hair", 1),)),
    PromptTarget("a person with dark hair", (("Black_Hair", 1),)),
    PromptTarget("a man with silver hair", (("Gray_Hair", 1),)),
    PromptTarget("a man with a moustache", (("Mustache", 1),)),
    PromptTarget("a person, wearing a cap", (("Wearing_Hat", 1),)),
    PromptTarget("a man with a bald head", (("Bald", 1),)),
    PromptTarget("a woman with painted lips", (("Wearing_Lipstick", 1),)),
    PromptTarget("a fair-skinned person", (("Pale_Skin", 1),)),
    PromptTarget("a smiling man with glasses", (("Smiling", 1), ("Eyeglasses", 1))),
    PromptTarget("a bald man with a goatee", (("Bald", 1), ("Goatee", 1))),
    PromptTarget("a woman with black hair, wearing lipstick",
                 (("Black_Hair", 1), ("Wearing_Lipstick", 1))),
    PromptTarget("a smiling person with gray hair", (("Smiling", 1), ("Gray_Hair", 1))),
    PromptTarget("a man with a mustache and glasses", (("Mustache", 1), ("Eyeglasses", 1))),
    PromptTarget("a person with blond hair, not smiling", (("Blond_Hair", 1), ("Smiling", 0))),
)

GRID_PROMPTS: tuple[str, ...] = (
    "a smiling woman with blond hair",
    "a man with a beard and glasses, lit from the right",
    "a bald man with a mustache, lit from the left",
    "a person with long black hair, wearing a hat",
    "a woman with gray hair and bangs, wearing lipstick, not smiling",
)


@dataclass
class EvalConfig:
    """What to sample and how much; the CLI fills it (tests shrink it)."""

    samples: int | None = None  # per Table-1 row and per VAE-table model; None = auto (≤ 1000)
    guidance_samples: int | None = None  # per prompt and guidance scale; None = auto
    minutes: float = 25.0  # sampling budget of one run; auto counts fit their parts' shares
    batch_size: int = 100  # samples per pipeline.sample call (guided calls run 2× this)
    seed: int = 0  # x_T, the samplers' noise and the VAE prior draws all derive from it
    table_steps: tuple[int, ...] = (10, 20, 50, 100)  # S of the DDIM paper's Table 1
    fast_steps: int = 50  # DDIM-S of the targets, the sweep, the VAE table and the grid
    frontier_steps: tuple[int, ...] = (5, 10, 20, 50)  # S of the samplers' frontier
    frontier_path: str = "assets/solver_frontier.png"  # its plot (relative: to the repository root)
    guidance_scales: tuple[float, ...] = (0.0, 1.0, 3.0, 5.0, 7.5, 10.0)  # w (0 = unconditional)
    guidance_prompts: tuple[PromptTarget, ...] = GUIDANCE_PROMPTS  # the sweep's prompts
    ceiling_faces: int = 2000  # test faces whose autoencoder round trip sets the sweep's ceiling
    vae_models: tuple[str, ...] = ("vae-beta1", "vae-beta4", "vae-beta10")  # compared with the LDM
    reference_split: str = "test"  # SynthFaces split of the FD-judge reference
    reference_n: int = 5000  # reference faces (the whole test split)
    device: str = "cpu"  # where the models run
    pixel_batch_size: int = 8  # batch of the pixel-vs-latent throughput measurement
    pixel_steps: int = 3  # timed optimizer steps per input shape
    amp: str = "none"  # autocast of the throughput measurement ("none" or "bf16")
    grid_prompts: tuple[str, ...] = GRID_PROMPTS  # rows of the grid
    grid_seeds: int = 8  # columns of the grid
    grid_guidance: float = 7.5  # the grid's guidance scale
    grid_path: str = "assets/ldm_prompts.png"  # the grid PNG (relative: to the repository root)
    words_faces: int = 256  # test faces of the word-sensitivity measurement (`word_sensitivity`)
    progress: bool = True  # tqdm bars on stderr
