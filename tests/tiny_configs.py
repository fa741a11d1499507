"""Tiny ENTED configurations shared by tests in several folders (importable: tests/ is on sys.path
through tests/conftest.py)."""

TINY_ENTED = dict(out_size=32, width=1 / 16, style_dim=16, code_dim=8, codebook_size=32)
TINY_ENTED_64 = dict(TINY_ENTED, out_size=64)
# network_g / dataset pieces of tiny option files (32 px)
TINY_NETWORK_G = dict(type="ENTED", **TINY_ENTED)
NORMALISE = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
TEST_DEGRADATION = {
    "blur_sigma": [1, 2],
    "downsample_range": [2, 3],
    "noise_range": [0, 5],
    "jpeg_range": [70, 90],
}


def training_dataset_options(root: str, size: int, **extra) -> dict:
    """Options of an ENTEDReferenceFaceDataset over the identity folders at ``root``."""
    return {
        "type": "ENTEDReferenceFaceDataset",
        "name": "train",
        "phase": "train",
        "dataroot_gt": root,
        "out_size": size,
        **extra,
    }
