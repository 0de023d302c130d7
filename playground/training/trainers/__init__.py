"""Trainers, one module per model family, reached through ``python -m playground.train <kind>``.

Each module listed in `TRAINERS` provides:
    HELP: str                          one line for ``python -m playground.train --help``
    add_arguments(parser) -> None      its command-line options
    main(args) -> int                  run it (exit status)
The shared machinery (the loop, run folder, checkpoints and resume, warm starts, DDP, speed
options, time budget, quality probes) is in `playground.training`.
"""

# subcommand → module
TRAINERS: dict[str, str] = {
    "vae": "playground.training.trainers.vae",
    "autoencoder": "playground.training.trainers.autoencoder",
    "judge": "playground.training.trainers.judge",
    "clip": "playground.training.trainers.clip",
    "ldm": "playground.training.trainers.ldm",
}
