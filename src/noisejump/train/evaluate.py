"""Scores for a model trained on the 8x8 digits, against a fixed held-out split.

    FD(a, b)   Frechet distance between Gaussians fitted to the 64 pixels of a and b:
               |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))
               (Dowson & Landau 1982; the FID formula of Heusel et al. 2017, eq. 6, on
               pixels instead of Inception features)
    nearest    the distance of each image to its nearest training image; the median over
               samples beside the median over held-out digits (a model that copies its
               training set has a much smaller median than unseen real digits)
    classes    the histogram of digits a fixed classifier (an RBF support-vector machine
               fitted to the training split) predicts for the samples

Baselines use real digits: FD(a same-size subset of the training split, held-out). Split,
subset, classifier and sampling seed are fixed, so two runs of ``evaluate`` agree.
"""

from __future__ import annotations

import numpy as np
import torch

from .data import digits_split
from .restore import load_trained
from .sampling import default_sampler, process_steps, sample, sampler_steps

#: Done-when thresholds (issue 5): FD ratio at most, nearest-distance ratio at least.
MAX_FD_RATIO = 1.5
MIN_NEAREST_RATIO = 0.5
SUBSET_SEED = 1


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FD of Gaussians fitted to the rows of ``a`` (n, d) and ``b`` (m, d), in float64.

    tr (S_a S_b)^(1/2) = sum of sqrt(eigenvalues of S_a^(1/2) S_b S_a^(1/2)), a symmetric
    PSD matrix, so ``eigh`` suffices (no general sqrtm); tiny negative eigenvalues from
    rounding are clipped to 0.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = np.sqrt(np.clip(middle, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


def median_nearest_distance(queries: np.ndarray, references: np.ndarray) -> float:
    """Median over ``queries`` of the L2 distance to the nearest row of ``references``."""
    distances = torch.cdist(
        torch.as_tensor(queries, dtype=torch.float64),
        torch.as_tensor(references, dtype=torch.float64),
    )
    return float(distances.min(1).values.median())


def score_digits(samples: torch.Tensor) -> dict:
    """All scores of ``samples`` (N, 1, 8, 8) in [-1, 1] against the fixed split."""
    from sklearn.svm import SVC

    train_images, train_labels, held_images, held_labels = digits_split()
    samples_flat, train_flat, held_flat = (
        _flat(samples.clamp(-1, 1)),
        _flat(train_images),
        _flat(held_images),
    )
    subset = torch.randperm(len(train_flat), generator=torch.Generator().manual_seed(SUBSET_SEED))
    subset = train_flat[subset[: min(len(samples_flat), len(train_flat))].numpy()]
    classifier = SVC(gamma="scale").fit(train_flat, train_labels.numpy())
    predicted = classifier.predict(samples_flat)
    fd_samples = frechet_distance(samples_flat, held_flat)
    fd_train = frechet_distance(subset, held_flat)
    nearest_samples = median_nearest_distance(samples_flat, train_flat)
    nearest_held = median_nearest_distance(held_flat, train_flat)
    histogram = np.bincount(predicted, minlength=10).tolist()
    scores = {
        "num_samples": len(samples_flat),
        "fd_samples_held_out": fd_samples,
        "fd_train_subset_held_out": fd_train,
        "fd_ratio": fd_samples / fd_train,
        "nearest_train_median_samples": nearest_samples,
        "nearest_train_median_held_out": nearest_held,
        "nearest_ratio": nearest_samples / nearest_held,
        "digit_histogram": histogram,
        "classifier_held_out_accuracy": float(
            (classifier.predict(held_flat) == held_labels.numpy()).mean()
        ),
    }
    scores["checks"] = {
        f"fd_ratio <= {MAX_FD_RATIO}": scores["fd_ratio"] <= MAX_FD_RATIO,
        f"nearest_ratio >= {MIN_NEAREST_RATIO}": scores["nearest_ratio"] >= MIN_NEAREST_RATIO,
        "all ten digits": all(count > 0 for count in histogram),
    }
    return scores


def _flat(images: torch.Tensor) -> np.ndarray:
    return images.reshape(len(images), -1).double().numpy()


def evaluate_run(
    path,
    *,
    num_samples: int = 500,
    sampler: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    device="cpu",
) -> dict:
    """Sample ``num_samples`` digits from a run's EMA weights and score them (``sampler``
    default: ddim, or ancestral for a token run)."""
    trained = load_trained(path, weights="ema", device=device)
    sampler = sampler or default_sampler(trained.process)
    if trained.config.data != "digits":
        raise ValueError(
            f"evaluate scores models of the digits; {str(path)!r} was trained on "
            f"{trained.config.data!r}"
        )
    images = sample(
        trained.model,
        trained.process,
        (num_samples, *trained.image_shape),
        sampler=sampler,
        prediction=trained.config.prediction,
        seed=seed,
        steps=steps,
        device=torch.device(device),
    )
    scores = score_digits(images.cpu())
    scores.update(
        {
            "run": str(trained.run_dir),
            "step": trained.step,
            "sampler": sampler,
            "sampler_steps": sampler_steps(sampler, process_steps(trained.process), steps),
            "seed": seed,
        }
    )
    return scores
