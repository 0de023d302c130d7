"""What every trainer shares (the trainers themselves are in `playground.training.trainers`):

- `distributed`  devices and DDP: `resolve_device`, `setup_distributed` (torchrun's RANK /
                 WORLD_SIZE), broadcasts and reductions
- `batches`      datasets by name, a seeded permutation per epoch (a resumed run sees the same
                 batches in the same order), DDP shards, image sources on the device
- `runs`         the run folder (log.jsonl, checkpoint file names), `Stopwatch`, `Every`,
                 `GracefulStop`, progress bars
- `state`        checkpoints with exact resume (safetensors + JSON, never pickle)
- `warm_start`   `--init` from a saved model, cumulative steps / images / CPU- and GPU-hours
- `speed`        bf16 autocast and channels_last chosen by timing on the machine that trains
- `options`      the options every config shares (`StartAndSpeed`, `check_run_options`, the
                 command line), the learning-rate schedule and autocast
- `loop`         `TrainLoop` (and `TrainHooks`): setup, resume, the step loop, probes, saves
- `ema`          the exponential moving average of weights a diffusion trainer ships
- `campaign`     continue every shipped model in dependency order, ship what got better
- `curves`       learning curves: quality against cumulative CPU-hours

The names below are the ones trainers, tools and tests import from ``playground.training``.
"""
from playground.training.batches import (
                                         DatasetImages,
                                         TensorImages,
                                         epoch_batches,
                                         image_source,
                                         mix_seed,
                                         open_dataset,
                                         open_on_all_ranks,
                                         shard,
                                         steps_per_epoch,
)
from playground.training.distributed import (
                                         DistInfo,
                                         all_reduce_sum,
                                         barrier,
                                         broadcast_flag,
                                         broadcast_float,
                                         resolve_device,
                                         run_trainer,
                                         setup_distributed,
                                         teardown_distributed,
)
from playground.training.loop import TrainHooks, TrainLoop
from playground.training.options import (
                                         AMP_MODES,
                                         LR_SCHEDULES,
                                         StartAndSpeed,
                                         add_common_arguments,
                                         autocast,
                                         budget_progress,
                                         check_resume_args,
                                         check_run_options,
                                         config_from_args,
                                         cosine_lr,
                                         int_tuple,
                                         json_args,
)
from playground.training.runs import (
                                         LOG_FILE,
                                         TRAIN_STATE_JSON,
                                         TRAIN_STATE_TENSORS,
                                         Every,
                                         GracefulStop,
                                         RunFolder,
                                         Stopwatch,
                                         progress_bar,
                                         read_log,
)
from playground.training.state import (
                                         STATE_FORMAT,
                                         load_train_extra,
                                         load_train_state,
                                         optimizer_from_flat,
                                         optimizer_to_flat,
                                         save_train_state,
)
from playground.training.warm_start import (
                                         CUMULATIVE_KEYS,
                                         add_cumulative,
                                         cumulative_of_model,
                                         cumulative_of_run,
                                         warm_start,
)

__all__ = [
    "DatasetImages",
    "TensorImages",
    "epoch_batches",
    "image_source",
    "mix_seed",
    "open_dataset",
    "open_on_all_ranks",
    "shard",
    "steps_per_epoch",
    "DistInfo",
    "all_reduce_sum",
    "barrier",
    "broadcast_flag",
    "broadcast_float",
    "resolve_device",
    "setup_distributed",
    "teardown_distributed",
    "TrainHooks",
    "TrainLoop",
    "run_trainer",
    "AMP_MODES",
    "LR_SCHEDULES",
    "StartAndSpeed",
    "add_common_arguments",
    "autocast",
    "budget_progress",
    "check_resume_args",
    "check_run_options",
    "config_from_args",
    "cosine_lr",
    "int_tuple",
    "json_args",
    "LOG_FILE",
    "TRAIN_STATE_JSON",
    "TRAIN_STATE_TENSORS",
    "Every",
    "GracefulStop",
    "RunFolder",
    "Stopwatch",
    "progress_bar",
    "read_log",
    "STATE_FORMAT",
    "load_train_extra",
    "load_train_state",
    "optimizer_from_flat",
    "optimizer_to_flat",
    "save_train_state",
    "CUMULATIVE_KEYS",
    "add_cumulative",
    "cumulative_of_model",
    "cumulative_of_run",
    "warm_start",
]
