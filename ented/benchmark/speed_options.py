"""The options of ``ented-benchmark speed``, apart from the measuring code, so that
``ented-benchmark speed --help`` imports no torch (:mod:`ented.benchmark.speed` runs them)."""


def add_arguments(parser) -> None:
    """The options of ``ented-benchmark speed`` (no torch work here)."""
    parser.add_argument("--size", type=int, default=512, help="image size (GFPGAN/CodeFormer: 512)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="throughput device")
    parser.add_argument(
        "--dtypes",
        nargs="*",
        choices=["fp32", "fp16", "bf16"],
        help="throughput dtypes (autocast); default: fp32 fp16 bf16 on cuda, none on cpu",
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16], help="throughput batch sizes")
    parser.add_argument(
        "--compile",
        choices=["off", "on", "both"],
        help="torch.compile for the throughput runs; default: both on cuda, off on cpu",
    )
    parser.add_argument(
        "--compile-backend",
        default="inductor",
        help="torch.compile backend (inductor; 'eager' or 'aot_eager' check the compile path quickly)",
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed batches per throughput run")
    parser.add_argument("--cpu-repeats", type=int, default=3, help="timed CPU batch-1 runs (0: skip)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed CPU batch-1 runs first")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    parser.add_argument("--matmul-n", type=int, default=8192, help="size of the bf16 matmul peak test")
    parser.add_argument("--train-step", action="store_true", help="also time the G+D training steps")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--train-iters", type=int, default=5, help="timed steps after one warm-up")
    parser.add_argument(
        "--loss-networks",
        choices=["random", "off"],
        default="random",
        help="VGG19/ArcFace loss terms in the training steps: random weights, or left out",
    )
    parser.add_argument(
        "--codeformer-repo", help="a clone of CodeFormer's repository (timed in a child process)"
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        help="skip (and record) compiled runs and training steps that would end past this many seconds "
        "(not in a dry run)",
    )
    parser.add_argument("--out", help="JSONL file for the records (written atomically)")
    parser.add_argument("--table", metavar="JSONL", help="print the tables of a records file and exit")
    parser.add_argument("--targets", metavar="JSONL", help="check the targets on a records file and exit")
    parser.add_argument("--strict", action="store_true", help="exit status 1 when a target FAILs")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="tiny networks on CPU, one repeat, every code path (checks a command line in seconds)",
    )
