r"""Image data for the training experiments (§5): CIFAR-10 from disk, or a built-in generated set.

CIFAR-10 cannot be downloaded on the project's machines, so the default is
:func:`shapes10`, a deterministic set of ten classes of 32×32 RGB textured shapes under
random affine and elastic deformations: a task where *where* a layer samples matters.
:func:`load_cifar10` reads the standard CIFAR-10 *python* batches
(``data_batch_1`` … ``data_batch_5``, ``test_batch``) from a directory the user gives.
Both return the same record, :class:`ImageSet`, with uint8 images of shape (N, 3, 32, 32).

Absolute accuracies on ``shapes10`` are not the paper's CIFAR-10 numbers; the experiments
compare patterns (which rows diverge, the order of the rows). See
``paper_notes/s05_results.md``.

>>> a = shapes10(n_train=20, n_test=10)
>>> b = shapes10(n_train=40, n_test=10)
>>> bool((a.train_x == b.train_x[:20]).all())   # image i does not depend on the set's size
True
>>> a.train_x.shape, a.train_x.dtype.name, sorted(set(a.train_y.tolist())) == list(range(10))
((20, 3, 32, 32), 'uint8', True)
"""
from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ImageSet", "shapes10", "load_cifar10", "load_dataset", "SHAPE_CLASSES", "CIFAR10_CLASSES",
           "DataError"]

SHAPE_CLASSES = ("disk", "square", "triangle", "plus", "ring", "star", "crescent", "L", "T", "dumbbell")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

_SIZE = 32
_SUPERSAMPLE = 2  # render at 64×64 and average 2×2 blocks: anti-aliased edges


class DataError(ValueError):
    """A data directory or file that is missing or not in the expected format."""


@dataclass(frozen=True)
class ImageSet:
    """A labelled image classification set.

    Attributes
    ----------
    name : str
        ``"shapes10"`` or ``"cifar10"``.
    train_x, test_x : ndarray of uint8, shape (N, 3, H, W)
    train_y, test_y : ndarray of int64, shape (N,)
    classes : tuple of str
    spec : dict
        What made the set (JSON-able); part of every run's identity in the result store.
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple
    spec: dict

    def channel_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and standard deviation of the training images, scaled to [0, 1]."""
        x = self.train_x.astype(np.float64) / 255.0
        return x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))


# ----------------------------------------------------------------------------- shapes10
def _shape_mask(label: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Indicator of class ``label``'s shape at canonical coordinates (u, v) ∈ [-1, 1]²."""
    r = np.hypot(u, v)
    au, av = np.abs(u), np.abs(v)
    if label == 0:  # disk
        return r < 0.6
    if label == 1:  # square
        return np.maximum(au, av) < 0.5
    if label == 2:  # equilateral triangle, circumradius 0.7
        s3 = np.sqrt(3.0)
        return (v > -0.35) & (v < 0.7 - s3 * u) & (v < 0.7 + s3 * u)
    if label == 3:  # plus
        return ((au < 0.2) & (av < 0.65)) | ((av < 0.2) & (au < 0.65))
    if label == 4:  # ring
        return (r > 0.38) & (r < 0.65)
    if label == 5:  # five-pointed star
        theta = np.arctan2(v, u)
        return r < 0.3 + 0.45 * np.cos(2.5 * theta) ** 2
    if label == 6:  # crescent
        return (r < 0.6) & (np.hypot(u - 0.3, v) > 0.45)
    if label == 7:  # L
        return (((u > -0.5) & (u < -0.15) & (av < 0.6)) | ((au < 0.5) & (v > -0.6) & (v < -0.25)))
    if label == 8:  # T
        return ((au < 0.6) & (v > 0.3) & (v < 0.65)) | ((au < 0.18) & (av < 0.65))
    if label == 9:  # dumbbell
        return (np.hypot(au - 0.4, v) < 0.28) | ((av < 0.08) & (au < 0.4))
    raise ValueError(f"label: expected 0…9, got {label!r}")


def _colour_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Foreground and background colours whose luma differs by at least 0.25 (the shape stays visible)."""
    luma = np.array([0.299, 0.587, 0.114])
    while True:
        fg, bg = rng.uniform(0.0, 1.0, size=(2, 3))
        if abs(float(luma @ fg - luma @ bg)) >= 0.25:
            return fg, bg


def _grating(rng: np.random.Generator, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """A random sinusoidal texture 1 + a·sin(2π f ⟨n, p⟩ + φ) on image coordinates."""
    angle, phase = rng.uniform(0.0, 2 * np.pi, size=2)
    freq = rng.uniform(1.0, 4.0)
    amp = rng.uniform(0.0, 0.3)
    return 1.0 + amp * np.sin(2 * np.pi * freq * (np.cos(angle) * px + np.sin(angle) * py) + phase)


def _render(label: int, rng: np.random.Generator, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """One image, float in [0, 1], shape (3, 32, 32)."""
    from scipy.ndimage import gaussian_filter

    px, py = grid  # image coordinates in [-1, 1], supersampled
    n = px.shape[0]
    # Elastic part (Simard et al. 2003): smooth random displacement field, at most `alpha` in canonical units.
    alpha = rng.uniform(0.05, 0.15)
    field = rng.standard_normal((2, n, n))
    field = np.stack([gaussian_filter(f, sigma=n / 10, mode="wrap") for f in field])
    field *= alpha / max(float(np.abs(field).max()), 1e-12)
    # Affine part: canonical = A⁻¹ (p − t), with rotation, anisotropic scale and shear.
    theta = rng.uniform(0.0, 2 * np.pi)
    scale = rng.uniform(0.75, 1.15) * np.exp(rng.uniform(-0.15, 0.15, size=2))
    shear = rng.uniform(-0.2, 0.2)
    shift = rng.uniform(-0.2, 0.2, size=2)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    a = rot @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag(scale)
    inv = np.linalg.inv(a)
    qx, qy = px - shift[0] + field[0], py - shift[1] + field[1]
    u = inv[0, 0] * qx + inv[0, 1] * qy
    v = inv[1, 0] * qx + inv[1, 1] * qy
    mask = _shape_mask(label, u, v).astype(np.float64)
    fg, bg = _colour_pair(rng)
    tex_fg, tex_bg = _grating(rng, px, py), _grating(rng, px, py)
    img = (mask * tex_fg)[None] * fg[:, None, None] + ((1.0 - mask) * tex_bg)[None] * bg[:, None, None]
    s = _SUPERSAMPLE
    img = img.reshape(3, _SIZE, s, _SIZE, s).mean(axis=(2, 4))
    img += 0.03 * rng.standard_normal(img.shape)
    return np.clip(img, 0.0, 1.0)


def _render_split(seed: int, split: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    n = _SIZE * _SUPERSAMPLE
    coords = (np.arange(n) + 0.5) / n * 2.0 - 1.0
    py, px = np.meshgrid(coords, coords, indexing="ij")
    images = np.empty((count, 3, _SIZE, _SIZE), dtype=np.uint8)
    labels = np.arange(count, dtype=np.int64) % 10  # exactly balanced: chance loss is ln 10
    for i in range(count):
        # Each image has its own stream, so image i is the same whatever the set's size.
        rng = np.random.default_rng([seed, split, i])
        images[i] = np.rint(_render(int(labels[i]), rng, (px, py)) * 255.0).astype(np.uint8)
    return images, labels


def shapes10(n_train: int = 10000, n_test: int = 2000, seed: int = 0, cache_dir=None) -> ImageSet:
    """The built-in data set: ten classes of 32×32 RGB textured shapes, deformed.

    Each image draws, from its own stream ``default_rng([seed, split, index])``, a random
    rotation (any angle), anisotropic scale, shear and shift, a smooth elastic displacement
    field, foreground and background colours (luma apart by ≥ 0.25), a sinusoidal texture for
    each, and pixel noise; it is rendered at 64×64 and averaged to 32×32. Labels are
    ``index % 10`` (exactly balanced). The same arguments give bitwise the same arrays.

    Parameters
    ----------
    n_train, n_test : int
        Sizes of the two splits (≥ 10 each).
    seed : int
        Root of every image's random stream.
    cache_dir : path-like, optional
        If given, the arrays are kept in an ``.npz`` there (keyed by the arguments) and read
        back on later calls: worker processes then do not render the set again.
    """
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(value, (int, np.integer)) or value < 10:
            raise ValueError(f"{name}: expected an integer ≥ 10, got {value!r}")
    spec = {"name": "shapes10", "n_train": int(n_train), "n_test": int(n_test), "seed": int(seed), "version": 1}
    cache = None
    if cache_dir is not None:
        tag = hashlib.sha1(repr(sorted(spec.items())).encode()).hexdigest()[:12]
        cache = Path(cache_dir) / f"shapes10-{tag}.npz"
        if cache.exists():
            with np.load(cache) as z:
                return ImageSet("shapes10", z["train_x"], z["train_y"], z["test_x"], z["test_y"],
                                SHAPE_CLASSES, spec)
    train_x, train_y = _render_split(seed, 0, n_train)
    test_x, test_y = _render_split(seed, 1, n_test)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y)
        os.replace(tmp, cache)
    return ImageSet("shapes10", train_x, train_y, test_x, test_y, SHAPE_CLASSES, spec)


# ----------------------------------------------------------------------------- CIFAR-10
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"
# The CIFAR batches are pickles of dicts holding numpy arrays; only what those need may be loaded,
# so a crafted file in the data directory cannot run code.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 writes a bytes buffer in protocol 2 (str → bytes, harmless)
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")
        return super().find_class(module, name)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"--data: {path} is not a CIFAR-10 python batch ({exc})") from None
    if not isinstance(batch, dict):
        raise DataError(f"--data: {path} is not a CIFAR-10 python batch (expected a dict, got {type(batch).__name__})")
    keys = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in keys or "labels" not in keys:
        raise DataError(f"--data: {path} lacks the 'data' or 'labels' entry of a CIFAR-10 batch")
    data = np.asarray(keys["data"])
    labels = np.asarray(keys["labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"--data: {path}: 'data' must be uint8 of shape (N, 3072), got "
                        f"{data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],) or labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"--data: {path}: 'labels' must be N integers in 0…9")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_dir(directory) -> Path:
    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"--data: {root} is not a directory (expected the CIFAR-10 python batches, "
                        "cifar-10-batches-py/ or its parent)")
    for candidate in (root, root / "cifar-10-batches-py"):
        if all((candidate / name).is_file() for name in _CIFAR_TRAIN + (_CIFAR_TEST,)):
            return candidate
    missing = [n for n in _CIFAR_TRAIN + (_CIFAR_TEST,) if not (root / n).is_file()]
    raise DataError(f"--data: {root} lacks the CIFAR-10 python batches {', '.join(missing)} "
                    "(neither there nor in cifar-10-batches-py/)")


def load_cifar10(directory) -> ImageSet:
    """CIFAR-10 from the standard python batches in ``directory``.

    ``directory`` is the ``cifar-10-batches-py`` folder of the official archive or its
    parent, holding ``data_batch_1`` … ``data_batch_5`` and ``test_batch``: pickled dicts
    with ``b'data'`` (uint8, N × 3072, the R, G and B planes of each 32×32 image in turn) and
    ``b'labels'`` (N integers 0…9). Only numpy arrays are unpickled; anything else is refused.

    Raises
    ------
    DataError
        The directory or a batch is missing or not in that format; the message names the file.
    """
    folder = _cifar_dir(directory)
    parts = [_read_batch(folder / name) for name in _CIFAR_TRAIN]
    test_x, test_y = _read_batch(folder / _CIFAR_TEST)
    digest = hashlib.sha1()
    for name in _CIFAR_TRAIN + (_CIFAR_TEST,):
        digest.update((folder / name).read_bytes())
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    spec = {"name": "cifar10", "sha1": digest.hexdigest(), "n_train": int(train_x.shape[0]),
            "n_test": int(test_x.shape[0])}
    return ImageSet("cifar10", train_x, train_y, test_x, test_y, CIFAR10_CLASSES, spec)


def load_dataset(data_dir=None, *, n_train: int = 10000, n_test: int = 2000, cache_dir=None) -> ImageSet:
    """CIFAR-10 from ``data_dir`` if given, else :func:`shapes10` of the given sizes."""
    if data_dir is not None:
        return load_cifar10(data_dir)
    return shapes10(n_train=n_train, n_test=n_test, cache_dir=cache_dir)
