"""The training loop every trainer shares, `TrainLoop` (run setup, resume or warm start, speed options, the step loop with logging,
quality probes, checkpoints, time budget and stop requests, final save). Each trainer gives it
its model, its step (forward + loss), its probe and its metrics."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from playground.store.checkpoints import save_model
from playground.training import speed
from playground.training.batches import (
    epoch_batches,
    image_source,
    open_on_all_ranks,
    shard,
    steps_per_epoch,
)
from playground.training.distributed import (
    DistInfo,
    barrier,
    broadcast_flag,
    broadcast_float,
)
from playground.training.options import budget_progress, check_resume_args, cosine_lr, json_args
from playground.training.runs import Every, GracefulStop, RunFolder, Stopwatch, progress_bar
from playground.training.state import (
    load_train_extra,
    load_train_state,
    optimizer_from_flat,
    save_train_state,
)
from playground.training.warm_start import add_cumulative, cumulative_of_run, warm_start

WARM_STEPS = 1  # steps of a session left out of its img/s (first allocations, compilation)


@dataclass
class TrainHooks:
    """What a trainer adds to the loop (each optional), given to `TrainLoop.run`."""

    after_step: Callable[[], None] | None = None  # after every optimizer step (an EMA update)
    extra_state: Callable[[], dict[str, torch.Tensor]] | None = None  # kept in the train state
    model_to_save: Callable[[], nn.Module] | None = None  # model.safetensors (default: the model)
    before_save_model: Callable[[], None] | None = None  # e.g. measure a scale factor first


class TrainLoop:
    """What every trainer shares, around its own model, step and metrics.

    Use in this order: ``TrainLoop(...)`` (checks the run folder), `open_data` (optional),
    `set_data` (batch size,
    steps per epoch, epoch budget), `setup_model` (seeded model + optimizer, resume, DDP),
    `run` (the epochs: seeded batches, cosine lr if ``cfg.lr_schedule == "cosine"``,
    optimizer steps, log.jsonl, periodic / mid-epoch / per-epoch checkpoints, time budget,
    graceful stop) and `finish` (metrics.json on rank 0). The config needs the fields
    seed, batch_size, lr, epochs, minutes, max_steps, train_size, checkpoint_minutes,
    log_every, progress and ``out_dir()``.
    """

    def __init__(self, cfg, info: DistInfo, device: torch.device, stop: GracefulStop,
                 resume: bool, rng_scheme: str = "order and noise seeded by (seed, epoch, step)"):
        self.cfg, self.info, self.device, self.stop, self.resume = cfg, info, device, stop, resume
        self.rng_scheme = rng_scheme
        self.out = RunFolder(cfg.out_dir(), is_main=info.is_main)
        self.has_checkpoint = self.out.has_checkpoint()
        barrier(info)  # every rank has looked before rank 0 writes anything
        if self.has_checkpoint and not resume:
            raise ValueError(f"{self.out.path} already holds a checkpoint: pass --resume to "
                             "continue it, or choose another --out")
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.hooks = TrainHooks()  # what the trainer adds: given to `run`
        self.resumed_extra: dict[str, torch.Tensor] = {}  # TrainHooks.extra_state, on resume

    # ---------------------------------------------------------------- data
    def open_data(self, train_set, val_set, dataset: str):
        """The given train / val sets, or else `dataset`'s splits (first ``cfg.train_size`` /
        ``cfg.eval_size`` images), with their image sources on the device.
        Returns (train_set, val_set, train_source, val_source)."""
        cfg, info = self.cfg, self.info
        if train_set is None:
            train_set = open_on_all_ranks(info, dataset, "train", cfg.train_size, cfg.data_root)
        if val_set is None:
            val_set = open_on_all_ranks(info, dataset, "val", cfg.eval_size, cfg.data_root)
        return (train_set, val_set, image_source(train_set, self.device, cfg.num_workers),
                image_source(val_set, self.device, cfg.num_workers))

    def set_data(self, n: int, default_epochs: int) -> None:
        """`n` training images; `default_epochs` when no epochs / minutes / max_steps is set."""
        cfg = self.cfg
        if cfg.train_size is not None and n > cfg.train_size:
            raise ValueError(f"the training set has {n} images, more than train_size={cfg.train_size}")
        self.n = n
        self.spe = steps_per_epoch(n, cfg.batch_size)
        self.batch = min(cfg.batch_size, n)
        if self.batch < self.info.world_size:
            raise ValueError(f"batch of {self.batch} images cannot be split over "
                             f"{self.info.world_size} processes")
        self.epochs = cfg.epochs if cfg.epochs is not None else (
            None if cfg.minutes is not None or cfg.max_steps is not None else default_epochs)

    # ---------------------------------------------------------------- model, optimizer, state
    def setup_model(self, build: Callable[[], tuple[nn.Module, torch.optim.Optimizer]],
                    fixed_on_resume: tuple[str, ...]) -> tuple[nn.Module, nn.Module]:
        """``build()`` (after ``torch.manual_seed(cfg.seed)``) gives (model, optimizer); on
        resume their state comes from the checkpoint. Returns (model, net): `net` is the DDP
        wrapper to call in training steps (the model itself in a single process)."""
        cfg, info, out = self.cfg, self.info, self.out
        torch.manual_seed(cfg.seed)
        self.model, self.optimizer = build()
        self.epoch, self.start_step, self.global_step, elapsed = 0, 0, 0, 0.0
        self.prior: dict[str, float] = {}  # cumulative counters of the models this run began from
        self.saved_speed: dict[str, Any] | None = None
        if self.resume and self.has_checkpoint:
            model_state, opt_tensors, state = load_train_state(out.path)
            check_resume_args(cfg, state.get("args", {}), fixed_on_resume)
            self.model.load_state_dict(model_state)
            optimizer_from_flat(self.optimizer, opt_tensors, state["optimizer"])
            self.resumed_extra = load_train_extra(out.path)
            self.epoch, self.start_step = state["epoch"], state["step_in_epoch"]
            self.global_step, elapsed = state["global_step"], state["elapsed_seconds"]
            self.prior = dict(state.get("prior", {}))
            self.saved_speed = state.get("speed")
            if state.get("steps_per_epoch") not in (None, self.spe):
                raise ValueError(f"the checkpoint has {state['steps_per_epoch']} steps per epoch, "
                                 f"this data {self.spe}: was the dataset changed?")
            out.truncate_log(self.global_step)
            out.remove_stale_temp_files()
            if info.is_main:
                print(f"resuming {out.path} at epoch {self.epoch + 1}, step {self.global_step}")
        else:
            if self.resume and info.is_main:
                print(f"nothing to resume in {out.path}: starting a new run")
            if getattr(cfg, "init", None):
                self.prior = warm_start(self.model, cfg.init, verbose=info.is_main)
        barrier(info)  # all ranks have read the checkpoint before it is overwritten
        # `net` is what training steps call: the model, wrapped for DDP once `run` has chosen
        # the speed options (the layout must be set before DDP registers the parameters).
        self.net = self.model
        self.amp, self.channels_last = "none", False
        self.stopwatch = Stopwatch(elapsed)
        self.saver = Every(cfg.checkpoint_minutes * 60 if cfg.checkpoint_minutes else None)
        self.args_json = json_args(cfg)
        self.step_times: list[float] = []  # seconds of each optimizer step of this session
        return self.model

    def choose_speed(self, source, step: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Settle bf16 autocast (``self.amp``) and channels_last for this run, then wrap DDP.

        ``auto`` options are timed on real forward + backward passes of `step` on the first
        batch (`playground.training.speed.choose`; rank 0's times decide for every rank). A resumed run
        keeps the options it was checkpointed with when the machine is the same kind, so
        that it replays the same arithmetic. The RNG state is restored after the probe.
        """
        cfg, info, model = self.cfg, self.info, self.model
        amp, layout = getattr(cfg, "amp", "none"), getattr(cfg, "layout", "contiguous")
        machine = speed.machine_summary(self.device)
        key = {k: machine[k] for k in ("device", "cpu_capability", "bf16_native")}
        saved = self.saved_speed
        if saved is not None and saved.get("machine") == key and saved.get("asked") == [amp, layout]:
            choice = speed.SpeedChoice(saved["amp"], saved["channels_last"])
            note = f"speed options: {choice.label} (kept from the checkpoint, same machine kind)"
        else:
            idx = shard(epoch_batches(self.n, cfg.batch_size, cfg.seed, 0)[0], info)
            x = next(iter(source.iterate([idx])))
            rng = torch.random.get_rng_state()

            def run_step(amp_mode: str, channels_last: bool) -> None:
                self._set_speed(amp_mode, channels_last)
                model.train()
                loss, _ = step(self._layout(x), idx, 0, 0)
                loss.backward()
                model.zero_grad(set_to_none=True)

            choice = speed.choose(run_step, amp, layout, self.device,
                                  agree=lambda s: broadcast_float(s, info, self.device))
            torch.random.set_rng_state(rng)
            note = choice.describe()
        self._set_speed(choice.amp, choice.channels_last)
        self.speed_state = {"amp": choice.amp, "channels_last": choice.channels_last,
                            "asked": [amp, layout], "machine": key}
        if info.is_main:
            print(f"{note} [{machine['cpu_capability']}, {machine['bf16_reason']}]", flush=True)
            self.out.log({"type": "speed", "step": self.global_step, "amp": choice.amp,
                          "channels_last": choice.channels_last, "seconds": choice.seconds,
                          "skipped": choice.skipped, **machine})
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            device = self.device
            self.net = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        if getattr(cfg, "compile", False):
            self.net = torch.compile(self.net)

    def _set_speed(self, amp: str, channels_last: bool) -> None:
        self.amp, self.channels_last = amp, channels_last
        self.model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in the chosen memory format (4-D tensors only)."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def checkpoint(self, epoch: int, step_in_epoch: int) -> None:
        """Train state + a loadable model (rank 0 writes; the other ranks return)."""
        if not self.info.is_main:
            return
        state = {"epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": self.global_step,
                 "steps_per_epoch": self.spe, "elapsed_seconds": self.stopwatch.elapsed(),
                 "rng": {"seed": self.cfg.seed, "scheme": self.rng_scheme},
                 "world_size": self.info.world_size, "device": str(self.device),
                 "prior": self.prior, "speed": getattr(self, "speed_state", None),
                 "args": self.args_json}
        extra = self.hooks.extra_state() if self.hooks.extra_state is not None else None
        save_train_state(self.out.path, self.model, self.optimizer, state, extra)
        if self.hooks.before_save_model is not None:
            self.hooks.before_save_model()
        save_model(self.out.path, self.saved_model())
        self.saver.reset()

    def saved_model(self) -> nn.Module:
        """What model.safetensors holds: ``model_to_save()`` if set, else the trained model."""
        return self.hooks.model_to_save() if self.hooks.model_to_save is not None else self.model

    def should_stop(self) -> bool:
        """Same answer on every rank: step limit, or rank 0's time budget / stop request."""
        cfg = self.cfg
        if cfg.max_steps is not None and self.global_step >= cfg.max_steps:
            return True
        out_of_time = cfg.minutes is not None and self.stopwatch.elapsed() >= cfg.minutes * 60
        return broadcast_flag(out_of_time or self.stop.requested, self.info, self.device)

    def elapsed(self) -> float:
        return self.stopwatch.elapsed()

    # ---------------------------------------------------------------- loop
    def cumulative(self) -> dict[str, float]:
        """Steps, images and CPU- or GPU-hours so far, counting the models this run began from."""
        return add_cumulative(self.prior, cumulative_of_run({
            "steps": self.global_step, "batch_size": self.batch, "world_size": self.info.world_size,
            "train_seconds": self.stopwatch.elapsed(), "device": str(self.device),
            "threads": torch.get_num_threads()}))

    def log_probe(self, probe: Callable[[], dict[str, Any]] | None) -> None:
        """One "probe" line in log.jsonl: `probe()`'s quality numbers with the cumulative
        counters, the points of the learning curves (rank 0 only)."""
        if probe is None or not self.info.is_main:
            return
        was_training = self.model.training
        scores = {k: v for k, v in probe().items() if isinstance(v, (int, float))}
        self.model.train(was_training)
        self.out.log({"type": "probe", "step": self.global_step, "elapsed": self.elapsed(),
                      **self.cumulative(), **scores})

    def run(self, source, step: Callable[..., tuple[torch.Tensor, torch.Tensor]],
            names: tuple[str, ...], *, validate: Callable[[int], None],
            postfix: Callable[[dict[str, float], float], dict[str, str]], log_lr: bool,
            probe: Callable[[], dict[str, Any]] | None = None,
            hooks: TrainHooks | None = None) -> None:
        """Train until a limit or a stop request.

        ``step(x, idx, epoch, step_in_epoch)`` runs the forward pass on this rank's batch `x`
        (float images; `idx` its dataset indices) and returns ``(loss, stats)``: the loss to
        backpropagate and a 1-D tensor of detached values, averaged over `log_every` steps into
        a "train" line of log.jsonl under `names` (with ``lr`` when `log_lr`). `postfix` turns
        those means and img/s into the progress bar's postfix. ``validate(epoch)`` runs on
        every rank after each full epoch (before its checkpoint). ``probe()`` (optional) gives
        the model's quality numbers on a fixed held-out batch: logged at the start, every
        ``cfg.probe_minutes`` and at the end. `hooks` (optional): see `TrainHooks`.
        """
        self.hooks = hooks or TrainHooks()
        cfg, info, out, optimizer = self.cfg, self.info, self.out, self.optimizer
        spe, batch, epochs = self.spe, self.batch, self.epochs
        self.choose_speed(source, step)
        cosine = getattr(cfg, "lr_schedule", "constant") == "cosine"
        # a warm start begins with fresh Adam moments: ramp the lr up so they settle first
        warmup = cfg.warmup_steps if getattr(cfg, "init", None) else 0
        probe_minutes = getattr(cfg, "probe_minutes", 0)
        probe = probe if probe_minutes > 0 else None  # 0 turns the probes off (benchmarks)
        probe_timer = Every(probe_minutes * 60)
        if self.global_step == 0:  # where a new (or warm-started) run begins
            self.log_probe(probe)
        window = torch.zeros(len(names), device=self.device)  # running sums of the stats
        window_steps, window_start = 0, time.perf_counter()
        stopped = self.should_stop()
        while not stopped and (epochs is None or self.epoch < epochs):
            epoch, start_step = self.epoch, self.start_step
            batches = [shard(b, info) for b in epoch_batches(self.n, cfg.batch_size, cfg.seed, epoch)]
            desc = f"epoch {epoch + 1}" + (f"/{epochs}" if epochs else "")
            bar = progress_bar(spe, start_step, desc, enabled=info.is_main and cfg.progress)
            done = start_step
            images = source.iterate(batches[start_step:])
            for step_in_epoch, x in enumerate(images, start=start_step):
                t0 = time.perf_counter()
                if cosine or warmup:
                    lr = cfg.lr
                    if cosine:
                        progress = budget_progress(cfg, self.global_step, spe,
                                                   self.stopwatch.elapsed(), epochs)
                        lr = cosine_lr(cfg.lr, progress, cfg.lr_min_ratio)
                    lr *= min(1.0, (self.global_step + 1) / warmup) if warmup else 1.0
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                self.model.train()
                loss, stats = step(self._layout(x), batches[step_in_epoch], epoch, step_in_epoch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if self.hooks.after_step is not None:
                    self.hooks.after_step()
                self.global_step += 1
                done = step_in_epoch + 1
                window += stats
                window_steps += 1
                self.step_times.append(time.perf_counter() - t0)
                bar.update(1)
                if self.global_step % cfg.log_every == 0:
                    means = dict(zip(names, (window / window_steps).tolist()))
                    img_s = window_steps * batch / (time.perf_counter() - window_start)
                    record = {"type": "train", "step": self.global_step,
                              "epoch": self.global_step / spe, **means, "img_per_s": img_s}
                    if log_lr:
                        record["lr"] = optimizer.param_groups[0]["lr"]
                    record["elapsed"] = self.stopwatch.elapsed()
                    out.log(record)
                    bar.set_postfix(**postfix(means, img_s))
                    window.zero_()
                    window_steps, window_start = 0, time.perf_counter()
                if probe_timer.due():
                    self.log_probe(probe)
                    probe_timer.reset()
                stopped = self.should_stop()
                if stopped:
                    break
                if self.saver.due() and done < spe:
                    self.checkpoint(epoch, done)
            bar.close()
            if done < spe:  # stopped mid-epoch
                self.checkpoint(epoch, done)
                break
            self.epoch, self.start_step = epoch + 1, 0
            validate(self.epoch)
            # Decide before saving, so a run that stops here records elapsed >= its budget
            # (else a resume with the same budget would find a little time left).
            stopped = stopped or self.should_stop()
            self.checkpoint(self.epoch, 0)
        if self.step_times:
            self.log_probe(probe)

    # ---------------------------------------------------------------- final metrics
    def run_metrics(self) -> dict[str, Any]:
        """The metrics.json entries about the run itself (time, device, budget, data, speed)."""
        cfg = self.cfg
        metrics: dict[str, Any] = {"train_seconds": self.stopwatch.elapsed(),
                                   "device": str(self.device), "world_size": self.info.world_size}
        metrics["amp"] = self.amp
        metrics.update({"epochs": self.global_step / self.spe, "steps": self.global_step})
        if hasattr(cfg, "dataset"):
            metrics["dataset"] = cfg.dataset
        metrics.update({
            "train_size": self.n,
            "batch_size": self.batch,
            "lr": cfg.lr,
            "train_img_per_s": self.steady_img_per_s(),
            "threads": torch.get_num_threads(),
            "speed_options": speed.option_label(self.amp, self.channels_last),
        })
        if getattr(cfg, "init", None):
            metrics["init"] = str(cfg.init)
        metrics["cumulative"] = add_cumulative(self.prior, cumulative_of_run(metrics))
        return metrics

    def steady_img_per_s(self) -> float | None:
        """Images per second of this session's optimizer steps, leaving out the first
        `WARM_STEPS` (allocation, compilation) when there are more."""
        times = self.step_times[WARM_STEPS:] if len(self.step_times) > WARM_STEPS else self.step_times
        return len(times) * self.batch / sum(times) if times and sum(times) > 0 else None

    def finish(self, final: Callable[[], tuple[dict[str, Any], str]]) -> dict[str, Any] | None:
        """On rank 0: make sure a checkpoint exists, ``final()`` → (metrics, summary line),
        save the model with metrics.json, print the summary. Returns the metrics (None on
        other ranks)."""
        metrics = None
        if self.info.is_main:
            if not self.out.has_checkpoint():  # e.g. limits already reached before the first step
                self.checkpoint(self.epoch, self.start_step)
            metrics, summary = final()
            save_model(self.out.path, self.saved_model(), metrics=metrics)
            print(summary)
        barrier(self.info)
        return metrics
