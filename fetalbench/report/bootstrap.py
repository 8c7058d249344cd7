"""The bootstrap over seeds crossed with test patients, and the intervals drawn from it.

A cell's score is a mean over seeds of macro F1 on one official test set. Two samples make it
uncertain: the seeds (split, label subset, initialisation) and the test set. The test set is a
sample of *patients*, not of independent images: a patient contributes several images (phantom
``brain``: 327 test images of 112 patients, up to 11 each; ``planes``: 1,275 of 213, up to 35),
and in FETAL_PLANES_DB consecutive frames of one patient are near duplicates. So the test set is
resampled by patient, each drawn patient bringing all its images: the cluster bootstrap
(Davison & Hinkley 1997, *Bootstrap Methods and their Application*, sec. 3.8; Field & Welsh 2007,
"Bootstrapping clustered data", J. R. Statist. Soc. B 69(3):369-390, who show that resampling the
clusters is consistent when clusters are independent, whatever the dependence within them).
Resampling images as if independent understates the test set's error by about the design effect
``1 + (m - 1) rho`` of the images' intra-patient correlation ``rho`` (Kish 1965), and its intervals
under-cover (tests/test_bootstrap.py simulates both on one data set).

Every seed and every method is scored on the *same* test patients, so the patients are crossed
with the seeds, not nested in them: one resample of the patients is shared by every seed and
every method of a table (pairs are by patient), and, for the percentile intervals, the seeds are
resampled independently of it, shared by the method and the reference (pairs are by seed): Owen's
pigeonhole bootstrap for crossed random effects (Owen 2007, "The pigeonhole bootstrap", Ann.
Appl. Stat. 1(2):386-411). Resampling patients anew for each seed would instead treat every seed
as tested on its own, independent test set and understate how much the shared test set moves all
of them together.

Resampled patients enter as multinomial weights on their images (:func:`cluster_weights`), so one
matrix product gives every record's resampled confusion counts (:func:`resampled_macro_f1`): a
table of a hundred records with 1,300 test images each and :data:`N_RESAMPLES` resamples takes a
fraction of a second. With every image its own patient the same functions give the image
bootstrap.

Intervals (Efron & Tibshirani 1993, *An Introduction to the Bootstrap*, ch. 12-13):

- :func:`standard_interval` for means over seeds of statistics linear in the per-image scores
  (a macro F1, a paired difference, an area under the curve): estimate ± t · se, where se² is the
  seeds' sample variance over n (which holds each run's own test-set noise already) plus the
  test-set error that all seeds share (the mean covariance between seeds under the patient
  resamples), with Welch-Satterthwaite degrees of freedom (Satterthwaite 1946): n - 1 for the
  seed part and, as a limit, infinitely many for the test-set part. Resampling seeds *and*
  patients for these would count each run's test-set noise twice (the pigeonhole bootstrap's
  known conservatism) and cover a known difference nearly always; this decomposition reduces to
  the paired t-test where records lack per-image predictions. Its p-value
  (:attr:`Standard.p_value`) and the minimal detectable difference
  (:func:`minimal_detectable_difference`) use the same se and degrees of freedom.
- :func:`expanded_percentile` for bounded or censored statistics (labels needed to match, which
  may be "not reached"; label-saving factors; the probability of improvement): the percentile
  interval with its tail probability widened as Hesterberg's expanded percentile interval does
  for small samples (Hesterberg 2015, "What teachers should know about the bootstrap", Am. Stat.
  69(4):371-386): the quantile at Phi(-sqrt(n/(n-1)) · t_{n-1, 1-a/2}).

The percentile intervals resample seeds and patients together, so they lean conservative. With
one seed and per-image predictions only the test patients vary (normal quantiles); with one seed
and none (records made before records kept predictions), there is no interval.

Why not a library: ``scipy.stats.bootstrap`` resamples one axis of independent observations
(paired samples included), not seeds crossed with clusters of images; rliable's stratified
bootstrap (Agarwal et al. 2021) resamples runs within tasks, not test images, and needs
``arch < 8``, ``absl-py`` and ``seaborn`` (an sdist only); baycomp's Bayesian tests compare
classifiers over cross-validation folds or data sets with a region of practical equivalence,
another design. Numpy does this in a few lines, and the probability of improvement follows
rliable's definition (:func:`fetalbench.report.statistics.probability_of_improvement`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import stats

from fetalbench.storage.digests import sha256_hex

N_RESAMPLES = 2000
"""Bootstrap resamples per table: the Monte Carlo error of a standard error is then about 1.6%."""
SEED = 20240430
"""Base seed of every resample: the leaderboard is the same bytes for the same records."""
CONFIDENCE = 0.95


class Standard(NamedTuple):
    """A standard interval: estimate, standard error, degrees of freedom, bounds, p-value of 0."""

    estimate: float
    se: float
    df: float
    low: float
    high: float
    p_value: float


class Percentile(NamedTuple):
    """A point estimate and its (expanded) percentile interval; bounds may be infinite."""

    estimate: float
    low: float
    high: float


def generator(key: str) -> np.random.Generator:
    """A numpy Generator seeded by :data:`SEED` and ``key`` (what is being resampled), so each
    resample does not depend on the order in which others were drawn."""
    return np.random.default_rng([SEED, int(sha256_hex(key.encode())[:12], 16)])


def cluster_weights(clusters: np.ndarray, n_resamples: int, rng: np.random.Generator
                    ) -> np.ndarray:
    """(n_resamples, n_images) float32 weights: ``clusters`` (n_images,) gives each image's
    cluster (its patient) as a code in ``0 .. n_clusters - 1``; each resample draws
    ``n_clusters`` clusters with replacement, and an image weighs as often as its cluster is
    drawn. Distinct codes for every image give the image bootstrap."""
    clusters = np.asarray(clusters)
    n_clusters = int(clusters.max()) + 1
    draws = rng.integers(0, n_clusters, size=(n_resamples, n_clusters))
    offsets = np.arange(n_resamples)[:, None] * n_clusters
    counts = np.bincount((draws + offsets).ravel(), minlength=n_resamples * n_clusters)
    return counts.reshape(n_resamples, n_clusters)[:, clusters].astype(np.float32)


def seed_counts(n_seeds: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, n_seeds) counts of each seed in each resample of the seeds."""
    return rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n_resamples).astype(float)


def resampled_macro_f1(labels: np.ndarray, predicted: np.ndarray, weights: np.ndarray,
                       n_classes: int) -> np.ndarray:
    """Macro F1 of each record (rows of ``predicted``, (records, images)) on each resample of the
    test set (rows of ``weights``, from :func:`cluster_weights`): (resamples, records).

    Per class, F1 = 2 TP / (true + predicted), 0 when the class is neither present nor predicted,
    as scikit-learn's ``f1_score(..., zero_division=0)`` which scored the records.
    """
    f1 = np.zeros((weights.shape[0], predicted.shape[0]))
    for label in range(n_classes):
        actual = labels == label
        said = predicted == label
        true = weights @ actual.astype(np.float32)
        tp = weights @ (said & actual).T.astype(np.float32)
        denominator = true[:, None] + weights @ said.T.astype(np.float32)
        f1 += np.divide(2 * tp, denominator, out=np.zeros_like(f1), where=denominator > 0)
    return f1 / n_classes


def seed_mean(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mean over resampled seeds: ``counts`` (resamples, seeds), ``values`` (resamples, seeds,
    ...) -> (resamples, ...)."""
    return np.einsum("bs,bs...->b...", counts, values) / counts.shape[1]


def standard_interval(observed: np.ndarray, test_replicates: np.ndarray) -> Standard:
    """The standard interval of the mean over seeds of a per-seed statistic that is linear in
    the per-image scores (a macro F1, a paired difference, an area under the curve).

    ``observed`` (seeds,) are the per-seed values, ``test_replicates`` (resamples, seeds) the
    same under resamples of the test patients (one resample shared by all seeds). The variance
    of the mean is the seeds' sample variance over n, which already holds each run's own test-set
    noise, plus the part of the test-set error that all seeds share: the mean covariance between
    two seeds under the resamples (for one seed, its variance). Degrees of freedom:
    Welch-Satterthwaite, n - 1 for the seed part and infinitely many for the test-set part; NaN
    bounds and p-value when nothing varies (one seed without per-image predictions).
    """
    observed = np.asarray(observed, dtype=float)
    n_seeds = observed.size
    estimate = float(observed.mean())
    seed_part = float(observed.var(ddof=1)) / n_seeds if n_seeds >= 2 else 0.0
    if n_seeds >= 2:
        covariance = np.cov(test_replicates, rowvar=False)
        shared = (covariance.sum() - np.trace(covariance)) / (n_seeds * (n_seeds - 1))
    else:
        shared = float(np.var(test_replicates, ddof=1))
    variance = seed_part + max(float(shared), 0.0)
    if not variance > 1e-24:
        return Standard(estimate, math.nan, math.nan, math.nan, math.nan, math.nan)
    df = variance**2 / (seed_part**2 / (n_seeds - 1)) if seed_part > 0 else math.inf
    se = math.sqrt(variance)
    half = float(stats.t.ppf((1 + CONFIDENCE) / 2, df)) * se
    p_value = float(2 * stats.t.sf(abs(estimate) / se, df))
    return Standard(estimate, se, df, estimate - half, estimate + half, p_value)


def minimal_detectable_difference(interval: Standard, power: float = 0.8) -> float:
    """The smallest true difference that the two-sided test of :func:`standard_interval` at
    level 1 - :data:`CONFIDENCE` detects with probability ``power``, at the interval's standard
    error and degrees of freedom: (t_{df, 1-a/2} + t_{df, power}) · se."""
    return float(stats.t.ppf((1 + CONFIDENCE) / 2, interval.df)
                 + stats.t.ppf(power, interval.df)) * interval.se


def expanded_tail(n_seeds: int) -> float:
    """Tail probability of the expanded percentile interval for n seeds; (1 - CONFIDENCE) / 2
    for one seed (test patients only, a hundred or more of them)."""
    if n_seeds < 2:
        return (1 - CONFIDENCE) / 2
    widened = math.sqrt(n_seeds / (n_seeds - 1)) * float(
        stats.t.ppf((1 + CONFIDENCE) / 2, n_seeds - 1))
    return float(stats.norm.sf(widened))


def expanded_percentile(estimate: float, replicates: np.ndarray, n_seeds: int,
                        resampled: bool) -> Percentile:
    """Expanded percentile interval of ``replicates`` (first axis); ``resampled`` says whether
    anything varied (else NaN bounds). Quantiles are order statistics (``inverted_cdf``), so a
    censored value (infinite: "not reached") stays one."""
    if not resampled:
        return Percentile(estimate, math.nan, math.nan)
    tail = expanded_tail(n_seeds)
    low, high = np.quantile(replicates, [tail, 1 - tail], method="inverted_cdf")
    return Percentile(estimate, float(low), float(high))
