"""Checking option dicts against the keys their reader knows, so that a typo is an error.

A misspelt option (``layot: list``, ``blur_sigam``, ``pixel_op``) would otherwise fall back to
its default without a word. Every class that reads an option section declares the keys it reads
next to the code that reads them and calls :func:`check_known_keys`; keys that BasicSR's runner
reads in the same sections are listed here once (:data:`BASICSR_DATASET_KEYS`,
:data:`BASICSR_TRAIN_KEYS`, ...), taken from BasicSR 1.4.2's ``train.py``, ``test.py``,
``data/__init__.py``, ``models/base_model.py`` and ``utils/options.py``.
"""

import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping

# datasets.<phase>: read by basicsr.data.build_dataloader / basicsr.train, or set by parse_options
# (phase, scale). use_shuffle and gt_size are common in BasicSR recipes; harmless here.
BASICSR_DATASET_KEYS = frozenset(
    {
        "name",
        "type",
        "phase",
        "scale",
        "batch_size_per_gpu",
        "num_worker_per_gpu",
        "use_shuffle",
        "dataset_enlarge_ratio",
        "prefetch_mode",
        "num_prefetch_queue",
        "pin_memory",
        "persistent_workers",
        "gt_size",
    }
)

# train: read by basicsr.train (total_iter, warmup_iter) and BaseModel (scheduler, optimizers).
BASICSR_TRAIN_KEYS = frozenset({"total_iter", "warmup_iter", "scheduler", "ema_decay", "optim_g", "optim_d"})

# val: read by basicsr.train / basicsr.test; pbar is read by BasicSR's own models.
BASICSR_VAL_KEYS = frozenset({"val_freq", "save_img", "metrics", "pbar"})

# the top level of an option file, as BasicSR's runners and parse_options read or set it
BASICSR_TOP_LEVEL_KEYS = frozenset(
    {
        "name",
        "model_type",
        "num_gpu",
        "manual_seed",
        "scale",
        "datasets",
        "path",
        "train",
        "val",
        "logger",
        "dist_params",
        "find_unused_parameters",
        # set by parse_options / the runner
        "is_train",
        "dist",
        "rank",
        "world_size",
        "auto_resume",
        "root_path",
    }
)

# path: set by parse_options, or read by BaseModel and the resume code per network
BASICSR_PATH_KEYS = frozenset(
    {
        "experiments_root",
        "models",
        "training_states",
        "log",
        "visualization",
        "results_root",
        "resume_state",
        "ignore_resume_networks",
    }
    | {f"{prefix}_{net}" for prefix in ("pretrain_network", "param_key", "strict_load") for net in "gd"}
)


def check_known_keys(section: str, options: Mapping, known: Iterable[str]) -> None:
    """Raises if ``options`` has a key outside ``known``, naming it and the closest known key.

    Args:
        section: where the options come from, for the message (``datasets.train``, ``train``).
        options: the option dict as read from YAML.
        known: every key the reader of ``options`` understands.

    Raises:
        ValueError: ``section: unknown option 'layot' (did you mean 'layout'?)``, one line per key.
    """
    known = set(known)
    unknown = sorted(str(key) for key in options if key not in known)
    if not unknown:
        return
    lines = []
    for key in unknown:
        close = difflib.get_close_matches(key, sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        lines.append(f"{section}: unknown option {key!r}{hint}")
    if len(unknown) == 1:
        raise ValueError(f"{lines[0]}; known options: {', '.join(sorted(known))}")
    raise ValueError("\n".join(lines) + f"\nknown options: {', '.join(sorted(known))}")


def parameter_names(function: Callable) -> frozenset:
    """The names a callable takes as keywords (``*args`` / ``**kwargs`` are not names)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(
        name for name, parameter in inspect.signature(function).parameters.items() if parameter.kind in kinds
    )
