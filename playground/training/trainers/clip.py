"""Train the playground's CLIP: ``python -m playground.train clip [--minutes 20 | --epochs 3]``.

Contrastive image–caption training (Radford et al. 2021) on SynthFaces with open_clip's own
pieces: the `TextImageCLIP` model (open_clip's CLIP class) and its BPE tokenizer. Each image i
is paired with a caption drawn from its attributes and factors; the caption changes every
epoch (`captions_for_dataset(..., seed=epoch)`), so the model sees many phrasings of the same
face. Per batch of B pairs, with s = exp(logit_scale):

    logits = s · f_img · f_txtᵀ  (B × B),   L = ½ [CE(logits, diag) + CE(logitsᵀ, diag)]

Hard negatives (on by default): in a batch, hair colour, hat and pose already tell every
caption apart, so plain CLIP never looks at a mustache (zero-shot AUC 0.50 on every small detail
after 0.5 CPU-hours). Each image also meets its own caption with one attribute flipped, B more
columns on the image side (`contrastive_loss`). After 1.5 CPU-hours of that a linear probe still
read glasses at AUC 0.53 from the image embedding, 1.00 from the patch embeddings: one flip in
18 is too rare a reason to keep a detail. `negatives_per_image` and `negative_pool` ("small")
make it K times as frequent; ``--attribute-weight`` gives it on every face (a training-only head
reads the labels from the image embedding). Both losses live in `clip_losses`.

A shipped U-Net reads this model's per-token text states, so a new CLIP ships with its U-Net.
``--freeze-text-states`` (with ``--init clip``) trains the image tower, both projections and the
temperature against the shipped text states, which stay bit for bit what the U-Net learned on;
`playground.training.ship` then accepts the run alone.
Those states blur the small-detail words, so ``--text-head-layers N`` adds a `TextHead` after
them: N blocks over each token's state and its word, whose output (zero at the start) joins the
end token's state before the projection; it trains with the states frozen.
``--freeze-image-tower`` keeps the image tower too, so that only that head, the text projection
and the temperature learn, and no image embedding moves.

``--negatives-say-absent`` makes every hard negative that takes a feature away say so
("… with hair that is not brown"), so that "not brown" is a caption a brown-haired face must
not match. ``--ema-decay`` ships an exponential moving average of the weights (`ema.EMA`).

Under DDP each process contrasts its own share of the batch (no feature gather). Latent
diffusion uses the frozen model as its text encoder. metrics.json
holds the zero-shot attribute accuracy on the test split — for each attribute, is an image
closer to "a photo of a person smiling" than to "… not smiling"? — per attribute and mean, with
the majority-class baseline, and image→caption retrieval accuracy within groups of 100
(`playground.evaluation.clip` re-measures a saved CLIP). Caption token ids come from
`clip_captions`; the config keeps the ids they use (``known_tokens``), so the app can say
which words of a prompt the model has never seen. The run's options are
`clip_config.CLIPTrainConfig`.
"""
from __future__ import annotations

import argparse
import math
from typing import Any

import torch
from torch import nn

from playground.data.captions import ABSENT_PHRASINGS
from playground.evaluation.clip import evaluate_clip, image_embeddings, zero_shot_accuracy
from playground.models.clip import VISION_POOLS, TextImageCLIP
from playground.training import (
    DistInfo,
    GracefulStop,
    TrainHooks,
    TrainLoop,
    add_common_arguments,
    autocast,
    config_from_args,
    int_tuple,
    open_dataset,
    run_trainer,
)
from playground.training.ema import EMA
from playground.training.trainers.clip_captions import (
    NEGATIVE_POOLS,
    CaptionTokens,
    caption_vocabulary,
    draw_new_rows,
    frozen_vocabulary,
    untrained_rows,
)
from playground.training.trainers.clip_config import FIXED_ON_RESUME, CLIPTrainConfig
from playground.training.trainers.clip_losses import (
    HEAD_BALANCES,
    AttributeHead,
    attribute_loss,
    attribute_matrix,
    contrastive_loss,
    factor_loss,
    factor_matrix,
)

HELP = "small CLIP (open_clip classes) on SynthFaces captions: the text encoder of latent diffusion"

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clamps the temperature so logits stay ≤ 100


# =========================================================================== training
def train_clip(cfg: CLIPTrainConfig, *, resume: bool = False, train_set=None, val_set=None,
               test_set=None, stop_event=None) -> dict[str, Any] | None:
    """Train (or, with `resume`, continue) a `TextImageCLIP` in ``cfg.out_dir()``.

    Datasets need ``.images`` (uint8 (N, 64, 64, 3)), ``.attributes`` and (SynthFaces)
    ``.factors``; given ones replace the SynthFaces splits (a given `val_set` also serves as
    the test set unless `test_set` is given).
    Returns:
        the metrics written to metrics.json (on rank 0; None on other ranks).
    """
    return run_trainer(cfg, stop_event, lambda info, device, stop: _train(
        cfg, info, device, resume, train_set, val_set, test_set, stop))


def _train(cfg: CLIPTrainConfig, info: DistInfo, device: torch.device, resume: bool,
           train_set, val_set, test_set, stop: GracefulStop):
    if cfg.freeze_text_states and not (cfg.init or resume):
        raise ValueError("--freeze-text-states keeps the text states of a trained CLIP: give it "
                         "one with --init NAME (frozen random states would teach nothing)")
    loop = TrainLoop(cfg, info, device, stop, resume,
                     rng_scheme="order seeded by (seed, epoch); captions by (seed, epoch, index)")
    if test_set is None and val_set is not None:
        test_set = val_set
    train_set, val_set, train_source, val_source = loop.open_data(train_set, val_set, "synthfaces")
    loop.set_data(len(train_source), default_epochs=3)
    if (cfg.attribute_weight or cfg.factor_weight) and info.world_size > 1:
        raise ValueError("--attribute-weight and --factor-weight train heads outside the DDP "
                         "model: use one process")
    new_tokens: tuple[int, ...] = ()
    heads = nn.ModuleDict()  # training-only read-outs of the image embedding (clip_losses)
    attributes = getattr(train_set, "attributes", {})
    names = tuple(sorted(attributes))
    labels = attribute_matrix(attributes, names) if cfg.attribute_weight else None
    factor_names, factors = (factor_matrix(getattr(train_set, "factors", {}))
                             if cfg.factor_weight else ((), None))

    def build():
        nonlocal new_tokens
        model = TextImageCLIP(cfg.model_config()).to(device)
        vocabulary = set(caption_vocabulary(train_set, model, absent=cfg.absent_phrases))
        if cfg.freeze_text_states:
            frozen = set(frozen_vocabulary(cfg.init))
            new_tokens = tuple(sorted(vocabulary - frozen))
            vocabulary |= frozen  # the rows a U-Net reads are kept in the file
            if new_tokens:
                model.config.state_tokens = tuple(sorted(frozen))
            model.freeze_text_states(() if cfg.freeze_words else new_tokens)
        if cfg.freeze_image_tower:
            model.freeze_image_tower()
        model.config.known_tokens = tuple(sorted(vocabulary))
        trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if labels is not None:
            heads["attribute_head"] = AttributeHead(cfg.embed_dim, names).to(device)
        if factors is not None:
            heads["factor_head"] = AttributeHead(cfg.embed_dim, factor_names).to(device)
        trained += list(heads.named_parameters())
        decay = [p for n, p in trained if p.ndim >= 2 and "embedding" not in n]
        rest = [p for n, p in trained if not (p.ndim >= 2 and "embedding" not in n)]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                 {"params": rest, "weight_decay": 0.0}], lr=cfg.lr)
        return model, opt

    model = loop.setup_model(build, FIXED_ON_RESUME)
    for key, head in heads.items() if loop.resumed_extra else ():  # a resume continues them
        head.load_state_dict({k.removeprefix(f"{key}."): v for k, v in
                              loop.resumed_extra.items() if k.startswith(f"{key}.")})
    if new_tokens and cfg.freeze_words:
        untrained = untrained_rows(model, new_tokens)
        if untrained:
            raise ValueError(f"--freeze-words would keep {len(untrained)} caption tokens "
                             f"at zero (the init never trained their rows): train once "
                             f"without it")
    elif new_tokens:
        if info.is_main:
            print(f"{len(new_tokens)} caption tokens the init never read learn their embedding "
                  f"rows; the {len(model.config.state_tokens)} others stay frozen", flush=True)
        draw_new_rows(model, new_tokens, cfg.seed)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay else None
    if ema is not None and loop.resume and loop.has_checkpoint:
        ema.load_state_tensors(loop.resumed_extra)
    elif ema is not None and cfg.init:  # warm-started weights are an average already:
        ema.num_updates = int(loop.prior.get("steps", 0))  # full decay from the first step
    shipped = ema.model if ema is not None else model  # what model.safetensors holds
    hooks = TrainHooks(
        after_step=(lambda: ema.update(model)) if ema is not None else None,
        extra_state=(lambda: {**heads.state_dict(), **(ema.state_tensors() if ema else {})})
        if len(heads) or ema is not None else None,
        model_to_save=lambda: shipped)
    captions = CaptionTokens(train_set, model, cfg.seed, cfg.hard_negatives,
                             cfg.negatives_per_image, NEGATIVE_POOLS[cfg.negative_pool],
                             cfg.absent_phrases, cfg.balanced_negatives,
                             cfg.negatives_say_absent, cfg.pair_absent, cfg.hide_hair_colour,
                             cfg.hide_facial_hair)

    def step(x, idx, epoch, step_in_epoch):
        tokens = captions.for_epoch(epoch)[idx.cpu()]
        if cfg.hard_negatives:  # one text pass for all: ((1 + K) B, L), positives first
            negatives = captions.negatives_for_epoch(epoch)[:, idx.cpu()]  # (K, B, L)
            tokens = torch.cat([tokens, negatives.flatten(0, 1)])
        tokens = model.trim_tokens(tokens).to(device)
        with torch.no_grad():
            model.clip.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        with autocast(device, loop.amp):
            img, txt, scale = loop.net(x, tokens)
        img, txt, negatives = img.float(), txt.float(), None
        if cfg.hard_negatives:
            txt, negatives = txt[:len(x)], txt[len(x):]
        loss = contrastive_loss(img, txt, scale.float(), negatives)
        extra = []
        if "attribute_head" in heads:
            attr_loss = attribute_loss(heads["attribute_head"], img, labels[idx.cpu()].to(device),
                                       cfg.head_balance)
            loss = loss + cfg.attribute_weight * attr_loss
            extra.append(attr_loss.detach())
        if "factor_head" in heads:
            fac_loss = factor_loss(heads["factor_head"], img, factors[idx.cpu()].to(device),
                                   cfg.head_balance)
            loss = loss + cfg.factor_weight * fac_loss
            extra.append(fac_loss.detach())
        with torch.no_grad():
            logits = img.float() @ txt.float().T
            matches = torch.arange(len(x), device=logits.device)
            acc = (logits.argmax(dim=1) == matches).float().mean()
        return loss, torch.stack([loss.detach(), acc, scale.detach().float(), *extra])

    def validate(epoch):
        if info.is_main:
            feats = image_embeddings(shipped, val_source)
            val = zero_shot_accuracy(shipped, feats, getattr(val_set, "attributes", {}))
            loop.out.log({"type": "val", "step": loop.global_step, "epoch": epoch,
                          "zero_shot_acc": val["zero_shot_acc"], "elapsed": loop.elapsed()})
            print(f"epoch {epoch}: val zero-shot attribute accuracy {val['zero_shot_acc']:.4f} "
                  f"(majority baseline {val['zero_shot_baseline']:.4f})", flush=True)

    def probe() -> dict[str, float]:
        """The learning curves' point: zero-shot ROC AUC and accuracy on the validation faces."""
        scores = zero_shot_accuracy(shipped, image_embeddings(shipped, val_source),
                                    getattr(val_set, "attributes", {}))
        return {k: v for k, v in scores.items() if k.startswith("zero_shot")
                and isinstance(v, float)}

    logged = ("loss", "batch_acc", "logit_scale") + tuple(
        key.replace("_head", "_loss") for key in heads)
    loop.run(train_source, step, logged, validate=validate,
             log_lr=True, postfix=lambda m, img_s: dict(loss=f"{m['loss']:.3f}",
                                                        acc=f"{m['batch_acc']:.2f}",
                                                        img_s=f"{img_s:.0f}"),
             probe=probe if info.is_main and getattr(val_set, "attributes", None) else None,
             hooks=hooks)

    def final():
        nonlocal test_set
        if test_set is None:
            test_set = open_dataset("synthfaces", "test", cfg.test_size, cfg.data_root)
        scores = evaluate_clip(shipped, test_set, device)
        group = scores["retrieval_group"]
        metrics = {
            **scores,
            "parameters": sum(p.numel() for p in model.parameters()),
            **({"ema_decay": cfg.ema_decay, "ema_updates": ema.num_updates} if ema else {}),
            **loop.run_metrics(),
        }
        return metrics, (f"done: {loop.global_step} steps, test zero-shot attribute accuracy "
                         f"{scores['zero_shot_acc']:.4f} (baseline {scores['zero_shot_baseline']:.4f}), "
                         f"retrieval top-1 {metrics['retrieval_top1']:.3f} of {group} "
                         f"→ {loop.out.path}")

    return loop.finish(final)


# =========================================================================== command line
def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``python -m playground.train clip``. Unset options keep the checkpoint's
    values on --resume (and the defaults shown otherwise)."""
    d = CLIPTrainConfig()
    S = argparse.SUPPRESS
    for flag, name, help_text in (
            ("--embed-dim", "embed_dim", "shared embedding size"),
            ("--patch-size", "patch_size", "ViT patch side"),
            ("--vision-width", "vision_width", "ViT width"),
            ("--vision-layers", "vision_layers", "ViT blocks"),
            ("--vision-head-width", "vision_head_width", "ViT attention head size"),
            ("--text-width", "text_width", "text transformer width"),
            ("--text-layers", "text_layers", "text transformer blocks"),
            ("--text-heads", "text_heads", "text attention heads"),
            ("--text-head-layers", "text_head_layers",
             "blocks of a head that reads the words beside the text states before pooling "
             "(0: none)"),
            ("--context-length", "context_length", "tokens per prompt")):
        p.add_argument(flag, dest=name, type=int, default=S,
                       help=f"{help_text} (default {getattr(d, name)})")
    p.add_argument("--vision-pool", dest="vision_pool", choices=VISION_POOLS, default=S,
                   help=f"image embedding from the class token (tok) or the mean of the patch "
                        f"tokens (avg) (default {d.vision_pool})")
    p.add_argument("--vision-stem", dest="vision_stem", type=int_tuple, default=S,
                   help="channels of a CNN whose output is added to the ViT's patch embeddings, "
                        "log2(patch) + 1 counts, e.g. 16,32,64,128 for 8×8 patches; new to an "
                        "--init CLIP, it starts as a no-op (default: none)")
    p.add_argument("--weight-decay", dest="weight_decay", type=float, default=S,
                   help=f"AdamW weight decay (default {d.weight_decay:g})")
    p.add_argument("--no-hard-negatives", dest="hard_negatives", action="store_false", default=S,
                   help="plain CLIP loss: no caption with one attribute flipped per image")
    p.add_argument("--negatives-per-image", dest="negatives_per_image", type=int, default=S,
                   help=f"hard negatives per image, each flipping another attribute "
                        f"(default {d.negatives_per_image})")
    p.add_argument("--negative-pool", dest="negative_pool", choices=sorted(NEGATIVE_POOLS),
                   default=S, help=f"attributes a hard negative may flip: all, or only the small "
                                   f"details (default {d.negative_pool})")
    p.add_argument("--balanced-negatives", dest="balanced_negatives", action="store_true",
                   default=S, help="flip each attribute as often on faces that have it as on "
                                   "faces that lack it (uniform picks mostly add a rare "
                                   "feature, which the text side can learn to spot alone)")
    p.add_argument("--negatives-say-absent", dest="negatives_say_absent", action="store_true",
                   default=S, help="a hard negative that takes a feature away always says it "
                                   "is missing ('… with hair that is not brown'), so the text "
                                   "side learns what 'not' does (default: 3 times in 10)")
    p.add_argument("--pair-absent", dest="pair_absent", action="store_true", default=S,
                   help="with --negatives-say-absent, each caption also says its face lacks "
                        "what its first negative adds, so the two differ mostly by 'not'")
    p.add_argument("--hide-hair-colour", dest="hide_hair_colour", type=float, default=S,
                   help="share of faces whose caption names no hair colour but says one they "
                        "lack is missing, against a negative that names it (default 0: off)")
    p.add_argument("--hide-facial-hair", dest="hide_facial_hair", type=float, default=S,
                   help="share of faces with a mustache or goatee whose caption says 'a beard' "
                        "instead, against a negative that says 'without a beard' (default 0)")
    p.add_argument("--attribute-weight", dest="attribute_weight", type=float, default=S,
                   help="weight of a loss in which a head (not shipped) reads the attribute "
                        "labels from the image embedding (default 0: off)")
    p.add_argument("--factor-weight", dest="factor_weight", type=float, default=S,
                   help="weight of a loss in which a second head (not shipped) regresses "
                        "SynthFaces' continuous factors, e.g. the brow's arch, from the image "
                        "embedding (default 0: off)")
    p.add_argument("--ema-decay", dest="ema_decay", type=float, default=S,
                   help="model.safetensors holds an exponential moving average of the weights "
                        "with this decay, e.g. 0.998 (default 0: the last step's weights)")
    p.add_argument("--head-balance", dest="head_balance", choices=HEAD_BALANCES, default=S,
                   help="how the heads combine their targets' losses: mean, or loss (each "
                        "target weighted by its share of the loss, so the details the tower "
                        f"has not learned get the gradient) (default {d.head_balance})")
    p.add_argument("--freeze-text-states", dest="freeze_text_states", action="store_true",
                   default=S, help="train the image side only (with --init: the shipped U-Net's "
                                   "text states stay exact, so the run may ship alone)")
    p.add_argument("--freeze-words", dest="freeze_words", action="store_true", default=S,
                   help="with --freeze-text-states, also keep the embedding rows of words no "
                        "U-Net reads (the init trained them): a faster step")
    p.add_argument("--freeze-image-tower", dest="freeze_image_tower", action="store_true",
                   default=S, help="with --freeze-text-states, keep the image tower as well: "
                                   "only the text head, the text projection and the "
                                   "temperature train (every image embedding stays exact)")
    p.add_argument("--absent-phrases", dest="absent_phrases", choices=ABSENT_PHRASINGS,
                   default=S, help=f"phrases for missing features in the captions: the U-Net's "
                                   f"(plain), or more, in new words (rich; with "
                                   f"--freeze-text-states only those words' rows learn) "
                                   f"(default {d.absent_phrases})")
    add_common_arguments(p, d, "run folder (default runs/clip)",
                         eval_help="the per-epoch zero-shot check")


def main(args: argparse.Namespace) -> int:
    train_clip(config_from_args(CLIPTrainConfig, args), resume=args.resume)
    return 0

