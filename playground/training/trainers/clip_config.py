"""What one CLIP training run is: `CLIPTrainConfig` (saved in train_state.json as "args"),
checked when it is made, and which of its fields a resumed run must keep."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from playground.data.captions import ABSENT_PHRASINGS
from playground.models.clip import CLIPConfig
from playground.store.checkpoints import runs_dir
from playground.training import StartAndSpeed, check_run_options
from playground.training.trainers.clip_captions import NEGATIVE_POOLS
from playground.training.trainers.clip_losses import HEAD_BALANCES


@dataclass
class CLIPTrainConfig(StartAndSpeed):
    """One CLIP training run (saved in train_state.json as "args")."""

    embed_dim: int = 128  # shared embedding size
    patch_size: int = 8  # ViT patch side (64 / 8 = 8×8 patches)
    vision_width: int = 128  # ViT width
    vision_layers: int = 3  # ViT blocks
    vision_head_width: int = 32  # ViT attention head size
    vision_pool: str = "tok"  # image embedding: class token ("tok") or mean of patches ("avg")
    # channels of a CNN added to the patch embeddings (log2(patch) + 1 counts; () = none);
    # new to a warm-started CLIP, it starts as a no-op (models.clip_stem)
    vision_stem: tuple[int, ...] = ()
    text_width: int = 128  # text transformer width (= the U-Net's context dim)
    text_layers: int = 4  # text transformer blocks
    text_heads: int = 4  # text attention heads
    text_head_layers: int = 0  # blocks of the TextHead that reads the words before pooling
    # (0 = open_clip's pooling; trains with --freeze-text-states, see models.clip.TextHead)
    context_length: int = 77  # tokens per prompt (SynthFaces captions need ≤ ~65)
    data_root: str | None = None  # SynthFaces cache folder
    epochs: int | None = None  # stop after this many epochs (3 if no minutes/max_steps given)
    minutes: float | None = None  # stop after this much training time, summed over resumes
    max_steps: int | None = None  # stop after this many optimizer steps in total (quick runs)
    batch_size: int = 128  # global batch: B pairs contrasted against each other
    hard_negatives: bool = True  # each image also meets its own caption with one attribute flipped
    negatives_per_image: int = 1  # K hard negatives per image, each flipping a different attribute
    negative_pool: str = "all"  # attributes a negative may flip: "all" or "small" (SMALL_DETAILS)
    # flip each attribute as often where a face has it as where it lacks it, so that a rare
    # feature's mention does not mark the negative (`clip_captions.balanced_flip_keys`)
    balanced_negatives: bool = False
    # a hard negative that takes a feature away always says it is missing ("… with hair that
    # is not brown"; else 3 times in 10), so the text side learns what "not" does
    negatives_say_absent: bool = False
    # and each caption also says its face lacks what its first negative adds ("hair that is
    # not brown" against "brown hair"), so the pair differs mostly by the "not"
    pair_absent: bool = False
    # share of the faces with one hair colour whose caption names none and says a colour it
    # lacks is missing, against a first negative that names that colour, so "hair that is not
    # brown" has to mean something (0 = off; `CaptionTokens._hidden`)
    hide_hair_colour: float = 0.0
    # likewise for a mustache or goatee: the caption says "a beard", its first negative
    # "without a beard" (0 = off)
    hide_facial_hair: float = 0.0
    # weight of an auxiliary BCE in which a training-only linear head reads the face's
    # attribute labels from the image embedding, so the tower keeps the details captions
    # flip too rarely (0 = off; see trainers.clip_losses)
    attribute_weight: float = 0.0
    # weight of an MSE in which a second training-only head regresses SynthFaces' continuous
    # factors (brow arch, eye opening, ...) from the image embedding (0 = off; clip_losses)
    factor_weight: float = 0.0
    # how each head combines its targets' losses: "mean" (all alike) or "loss" (each by its
    # share of the loss, so the details the tower misses get the gradient; clip_losses)
    head_balance: str = "mean"
    freeze_text_states: bool = False  # train only the image tower, projections and temperature,
    # so a U-Net conditioned on the init's text states stays valid (ship accepts it alone);
    # words the init never read still learn their embedding rows (`frozen_vocabulary`)
    # keep those rows too (the init trained them): nothing before the TextHead trains, the
    # text pass builds no graph and a CPU step is ~1.7x faster (continuing a settled CLIP)
    freeze_words: bool = False
    # with --freeze-text-states, keep the image tower too: only the TextHead, the text
    # projection and the temperature train, so every image embedding stays bit for bit and
    # what the text side learns (e.g. what "not" does) cannot cost the image side a detail
    freeze_image_tower: bool = False
    absent_phrases: str = "plain"  # captions' phrases for missing features: "plain" (the
    # U-Net's captions) or "rich" (more phrasings, in words a U-Net never read; see captions)
    # decay of an exponential moving average of the weights, which is what model.safetensors
    # then holds (0 = off: the last step's weights). The text side's zero-shot scores swing
    # from checkpoint to checkpoint while the image probe holds still; an average damps that
    ema_decay: float = 0.0
    lr: float = 1e-3  # AdamW learning rate (peak of the cosine schedule)
    lr_schedule: str = "cosine"  # "cosine" (to lr_min_ratio · lr at the end) or "constant"
    lr_min_ratio: float = 0.05  # final learning rate of the cosine schedule, as a fraction of lr
    weight_decay: float = 0.05  # AdamW weight decay
    device: str = "cpu"  # cpu, cuda, cuda:N or auto (CUDA if available)
    seed: int = 0  # initial weights, data order, captions
    train_size: int | None = None  # use the first N training images (None = the whole split)
    eval_size: int | None = 1000  # first N validation images for the per-epoch zero-shot check
    test_size: int | None = None  # first N test images for metrics.json (None = the whole split)
    checkpoint_minutes: float = 2.0  # also checkpoint this often within an epoch
    log_every: int = 20  # a "train" line in log.jsonl every N steps
    num_workers: int = 2  # unused (SynthFaces is in memory); kept for the shared options
    threads: int | None = None  # CPU threads for torch (None = torch's default, all cores)
    progress: bool = True  # tqdm progress bar
    out: str | None = None  # run folder (default: runs/clip)
    MODEL_KIND: ClassVar[str] = "clip"
    ARCHITECTURE: ClassVar[tuple[str, ...]] = (
        "embed_dim", "patch_size", "vision_width", "vision_layers", "vision_head_width",
        "vision_pool", "vision_stem", "context_length", "text_width", "text_heads",
        "text_layers", "text_head_layers")

    def __post_init__(self):
        check_run_options(self)
        self.vision_stem = tuple(int(c) for c in self.vision_stem)  # (a list from JSON)
        if self.batch_size < 2:
            raise ValueError("a contrastive batch needs at least 2 pairs")
        if min(self.attribute_weight, self.factor_weight) < 0:
            raise ValueError(f"attribute_weight and factor_weight must be ≥ 0, got "
                             f"{self.attribute_weight} and {self.factor_weight}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.head_balance not in HEAD_BALANCES:
            raise ValueError(f"head_balance must be one of {HEAD_BALANCES}, "
                             f"got {self.head_balance!r}")
        if self.absent_phrases not in ABSENT_PHRASINGS:
            raise ValueError(f"absent_phrases must be one of {ABSENT_PHRASINGS}, "
                             f"got {self.absent_phrases!r}")
        if self.negative_pool not in NEGATIVE_POOLS:
            raise ValueError(f"negative_pool must be one of {sorted(NEGATIVE_POOLS)}, "
                             f"got {self.negative_pool!r}")
        if self.pair_absent and not (self.hard_negatives and self.negatives_say_absent):
            raise ValueError("--pair-absent needs hard negatives and --negatives-say-absent")
        if not (0 <= self.hide_hair_colour <= 1 and 0 <= self.hide_facial_hair <= 1):
            raise ValueError(f"hide_hair_colour and hide_facial_hair are shares of faces in "
                             f"[0, 1], got {self.hide_hair_colour}, {self.hide_facial_hair}")
        hides = self.hide_hair_colour or self.hide_facial_hair
        if hides and not (self.hard_negatives and self.absent_phrases == "rich"
                          and self.negative_pool == "all"):
            raise ValueError("--hide-hair-colour and --hide-facial-hair need hard negatives "
                             "from the 'all' pool and --absent-phrases rich")
        if self.freeze_words and not self.freeze_text_states:
            raise ValueError("--freeze-words keeps the word rows of frozen text states: "
                             "use it with --freeze-text-states")
        if self.freeze_image_tower and not self.freeze_text_states:
            raise ValueError("--freeze-image-tower leaves only the text side's head to train: "
                             "use it with --freeze-text-states")
        if self.freeze_image_tower and (self.attribute_weight or self.factor_weight):
            raise ValueError("--attribute-weight and --factor-weight teach the image embedding, "
                             "which --freeze-image-tower keeps as it is")
        pool_size = len(NEGATIVE_POOLS[self.negative_pool])
        if not 1 <= self.negatives_per_image <= pool_size:
            raise ValueError(f"negatives_per_image must be 1..{pool_size} for the "
                             f"{self.negative_pool!r} pool, got {self.negatives_per_image}")
        self.model_config()

    def model_config(self, known_tokens: tuple[int, ...] = ()) -> CLIPConfig:
        return CLIPConfig(embed_dim=self.embed_dim, patch_size=self.patch_size,
                          vision_width=self.vision_width, vision_layers=self.vision_layers,
                          vision_head_width=self.vision_head_width,
                          vision_pool=self.vision_pool, vision_stem=self.vision_stem,
                          text_width=self.text_width, text_layers=self.text_layers,
                          text_heads=self.text_heads, text_head_layers=self.text_head_layers,
                          context_length=self.context_length, known_tokens=known_tokens)

    def out_dir(self) -> Path:
        return Path(self.out) if self.out else runs_dir() / "clip"


FIXED_ON_RESUME = ("embed_dim", "patch_size", "vision_width", "vision_layers", "vision_head_width",
                   "vision_pool", "vision_stem",
                   "text_width", "text_layers", "text_heads", "text_head_layers",
                   "context_length", "batch_size",
                   "seed", "train_size", "hard_negatives", "freeze_text_states", "freeze_words",
                   "freeze_image_tower",
                   "attribute_weight", "factor_weight", "head_balance", "ema_decay")
