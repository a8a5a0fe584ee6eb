"""Power analysis for the cross-modal retrieval claim: how large must the demo cohort be?

The claim: the slides of a held-out lineage retrieve that lineage's own RNA profile among candidates, also for
lineages (and patients) never trained on. This module simulates many replicate cohorts of a given size with the
synthetic generator's own models and asks how often an *idealised* image predictor would demonstrate the claim
under the study's evaluation (patient-level K-fold, patient-bootstrap interval of the mean percentile rank).

Each replicate cohort (:func:`simulate_cohort`) uses

- the activity model :func:`~gbhet_lib.data.synthetic.programs.draw_cohort_activities` (patient means ~ N(0, I),
  lineage deviations N(0, lineage_sd² I));
- the expression model :func:`~gbhet_lib.data.synthetic.genes.make_gene_universe` +
  :func:`~gbhet_lib.data.synthetic.expression.draw_counts` with log-normal size factors and per-patient (and
  batch) log offsets, then DESeq2 size factors and ``log2(x + 1)``
  (:func:`~gbhet_lib.rna.normalise.normalise_counts`);
- an image model: each of a lineage's slides shows its visible programs (hypoxia, proliferation, angiogenesis) as
  the true activities plus N(0, image_noise_sd² I) slide noise (stain, section and sampling variation, on the
  activity scale: sd 1 between patients); the lineage's image vector is the mean over its slides.

Under patient-level K-fold (:func:`~gbhet_lib.evaluate.splits.patient_folds` over the lineages' patients), for
each fold (:func:`fold_percentiles`):

- RNA side: every gene is z-scored with the training lineages' mean and sd; a lineage's score of a visible program
  is the mean z of that program's module genes (the planted modules); the three scores are standardised again with
  the training lineages' mean and sd;
- image side: the image vectors are standardised per program with the training lineages' mean and sd (so both
  sides live on one scale, fitted on training data only);
- gallery = the RNA scores of the fold's held-out lineages; each held-out lineage is one query whose true
  candidate is its own profile;
- the **oracle** ranks the gallery by Euclidean distance between the query's image vector and each profile's
  scores (it knows which genes and which image features carry which program: an idealised predictor, so a cohort
  too small for it is too small for any trained model);
- the **image-blind** predictor ranks the gallery once for every query, by distance of each profile to the
  training-fold RNA centroid. Every gallery profile is the true candidate of exactly one query, so the true ranks
  of a fold are a permutation of 1..G (ties counted ``mid``) and its mean percentile is exactly 0.5, the chance
  level :func:`~gbhet_lib.evaluate.metrics.percentile_rank_chance`: it is the check that the evaluation has no
  leak a query-independent score could exploit.

Percentiles follow :func:`~gbhet_lib.evaluate.metrics.percentile` (1 = true profile ranked first, chance 0.5).
Per replicate: the mean percentile over all lineages (each held out once) and its patient-bootstrap interval
(:func:`~gbhet_lib.evaluate.metrics.bootstrap_ci`, patients as groups). **Power** = the fraction of replicates whose
interval's low end is above 0.5 (one-sided, nominal false-positive rate (1 − level) / 2).

Note on the folds: the gallery holds the held-out lineages of *all* of a fold's patients, so retrieval mixes telling
patients apart (patient means differ by sd √2 per program) and telling a patient's lineages apart (sd √2 ·
lineage_sd). With leave-one-patient-out (``n_folds=None``) the gallery is one patient's lineages only: a test of
intra-tumour discrimination, at chance when ``lineage_sd`` is 0. The table reports that part separately
(``oracle_within_patient``: the oracle's percentile among the query's own patient's lineages).

Calibration of the criterion: with an uninformative oracle (huge ``image_noise_sd``) about 1–5 % of replicates
have their interval above 0.5 (nominal 2.5 %; 250 replicates per size, 4–16 patients).

Seeds: replicate r of a size draws everything from ``SeedSequence(seed, spawn_key=(n_patients, min_lineages,
max_lineages, r))`` (:func:`replicate_seed`), so a size's results do not depend on the other sizes in the grid or
on the order they run in, and the sizes that differ only in slides per lineage share their cohorts (common random
numbers: the 1-slide image vector is the first slide of the 2-slide one).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import pandas as pd

from ..data.synthetic.cohort import CohortSpec
from ..data.synthetic.expression import draw_counts, draw_size_factors, patient_and_batch_offsets
from ..data.synthetic.genes import make_gene_universe
from ..data.synthetic.programs import VISIBLE_PROGRAMS, draw_cohort_activities
from .metrics import bootstrap_ci, percentile, percentile_rank_chance, retrieval_ranks
from .splits import patient_folds

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CHANCE = percentile_rank_chance()
DEFAULT_IMAGE_NOISE_SD = 0.5
TABLE_COLUMNS: tuple[str, ...] = (
    "n_patients", "min_lineages", "max_lineages", "slides_per_lineage", "n_lineages_mean", "slides_mean",
    "oracle_percentile", "oracle_within_patient", "power", "power_se", "blind_percentile", "blind_above_chance",
    "blind_coverage", "replicates", "n_folds")


# ------------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class CohortSize:
    """One candidate cohort size: patients, lineages per patient (uniform in [min, max]) and slides per lineage."""

    n_patients: int
    min_lineages: int
    max_lineages: int
    slides_per_lineage: int

    def __post_init__(self) -> None:
        if not (isinstance(self.n_patients, (int, np.integer)) and self.n_patients >= 2):
            raise ValueError(f"n_patients={self.n_patients!r} must be an integer ≥ 2 (the interval resamples "
                             "patients)")
        if not 1 <= self.min_lineages <= self.max_lineages <= 9:
            raise ValueError(f"lineages per patient ({self.min_lineages}, {self.max_lineages}) must satisfy "
                             "1 ≤ min_lineages ≤ max_lineages ≤ 9, e.g. (2, 3)")
        if not (isinstance(self.slides_per_lineage, (int, np.integer)) and self.slides_per_lineage >= 1):
            raise ValueError(f"slides_per_lineage={self.slides_per_lineage!r} must be an integer ≥ 1")

    @property
    def expected_lineages(self) -> float:
        """Expected number of lineages: n_patients · (min + max) / 2."""
        return self.n_patients * (self.min_lineages + self.max_lineages) / 2

    @property
    def expected_slides(self) -> float:
        """Expected number of slides to render: expected lineages · slides per lineage."""
        return self.expected_lineages * self.slides_per_lineage

    @classmethod
    def coerce(cls, value: CohortSize | Sequence[Any]) -> CohortSize:
        """A :class:`CohortSize` from itself, ``(n_patients, (min, max), slides)`` or ``(n_patients, min, max,
        slides)``."""
        if isinstance(value, CohortSize):
            return value
        try:
            items = tuple(value)
            if len(items) == 3:
                n, (lo, hi), slides = items
            else:
                n, lo, hi, slides = items
        except (TypeError, ValueError):
            raise ValueError(f"size {value!r} must be a CohortSize, (n_patients, (min_lineages, max_lineages), "
                             "slides_per_lineage) or (n_patients, min_lineages, max_lineages, slides_per_lineage), "
                             "e.g. (8, (2, 3), 2)") from None
        return cls(n, lo, hi, slides)


@dataclass(frozen=True)
class PowerModel:
    """The generative model of the simulated cohorts (defaults: the demo :class:`CohortSpec`, fewer genes).

    Attributes:
        image_noise_sd: per-slide sd of each visible program's image readout around the lineage's true activity
            (activity units: patients differ with sd 1); stain, sectioning and sampling noise.
        lineage_sd: sd of a lineage's activities around its patient's (intra-tumour heterogeneity).
        patient_gene_sd, batch_gene_sd: sd of the per-patient and cohort-wide per-gene log offsets.
        size_factor_sd: sd of the log library size factors.
        n_genes, module_size, n_drivers: the gene universe (:func:`make_gene_universe`); only the module genes
            enter the scores, the others only the DESeq2 size factors, so fewer genes than the demo's keep the
            simulation fast without changing what it measures (:meth:`from_spec` keeps the spec's modules).
    """

    image_noise_sd: float = DEFAULT_IMAGE_NOISE_SD
    lineage_sd: float = CohortSpec.lineage_sd
    patient_gene_sd: float = CohortSpec.patient_gene_sd
    batch_gene_sd: float = CohortSpec.batch_gene_sd
    size_factor_sd: float = 0.35
    n_genes: int = 600
    module_size: int = 40
    n_drivers: int = 8

    def __post_init__(self) -> None:
        for name in ("image_noise_sd", "lineage_sd", "patient_gene_sd", "batch_gene_sd", "size_factor_sd"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value!r} must be a finite sd ≥ 0")
        # the generator's own check, with its own message
        CohortSpec(n_genes=self.n_genes, module_size=self.module_size, n_drivers=self.n_drivers)

    @classmethod
    def from_spec(cls, spec: CohortSpec, image_noise_sd: float = DEFAULT_IMAGE_NOISE_SD,
                  n_genes: int | None = 600) -> PowerModel:
        """The model of cohort ``spec`` (its lineage_sd, gene offsets and modules); ``n_genes`` None keeps the
        spec's gene count (slower), otherwise at least the module genes plus 100 background genes."""
        genes = spec.n_genes if n_genes is None else max(n_genes, spec.module_size * 6 + 100)
        return cls(image_noise_sd=image_noise_sd, lineage_sd=spec.lineage_sd, patient_gene_sd=spec.patient_gene_sd,
                   batch_gene_sd=spec.batch_gene_sd, n_genes=genes, module_size=spec.module_size,
                   n_drivers=spec.n_drivers)


def size_grid(n_patients: Iterable[int] = (4, 6, 8, 12, 16), lineages: Iterable[tuple[int, int]] = ((2, 3),),
              slides: Iterable[int] = (1, 2)) -> list[CohortSize]:
    """Every combination of patients × (min, max) lineages × slides per lineage (the book's default grid)."""
    return [CohortSize(n, lo, hi, s) for (lo, hi) in lineages for s in slides for n in n_patients]


# ------------------------------------------------------------------------------------------------- simulate
@dataclass(frozen=True)
class SimulatedCohort:
    """One replicate cohort, L lineages.

    Attributes:
        patient: (L,) patient id of each lineage.
        visible: (L, 3) true visible-program activities (columns :data:`VISIBLE_PROGRAMS`).
        image: (L, 3) image vectors: visible + the mean of the lineage's slide noises.
        expression: (L, n_genes) log2 normalised expression.
        modules: (3, module_size) int column indices of each visible program's module genes in ``expression``.
    """

    patient: np.ndarray
    visible: np.ndarray
    image: np.ndarray
    expression: np.ndarray
    modules: np.ndarray


def replicate_seed(seed: int, size: CohortSize, replicate: int) -> np.random.SeedSequence:
    """The seed sequence of replicate ``replicate`` of ``size`` (not of its slides per lineage: see the module
    docstring)."""
    if replicate < 0:
        raise ValueError(f"replicate={replicate} must be ≥ 0")
    return np.random.SeedSequence(seed, spawn_key=(size.n_patients, size.min_lineages, size.max_lineages,
                                                   replicate))


def simulate_cohort(seed: np.random.SeedSequence, size: CohortSize, model: PowerModel = PowerModel()
                    ) -> SimulatedCohort:
    """One replicate cohort of ``size`` drawn from ``model`` (every step from its own child of ``seed``)."""
    from ..rna.normalise import normalise_counts

    streams = seed.spawn(6)
    rng = {name: np.random.default_rng(s) for name, s in
           zip(("genes", "activity", "size_factors", "offsets", "counts", "slides"), streams)}
    genes = make_gene_universe(rng["genes"], model.n_genes, model.module_size, model.n_drivers)
    lineages, activity = draw_cohort_activities(rng["activity"], size.n_patients, size.min_lineages,
                                                size.max_lineages, model.lineage_sd)
    factors = draw_size_factors(rng["size_factors"], activity.index, model.size_factor_sd)
    offsets = patient_and_batch_offsets(rng["offsets"], genes, lineages, model.patient_gene_sd, model.batch_gene_sd)
    counts = draw_counts(rng["counts"], genes, activity, factors, offsets)
    expression = normalise_counts(counts).to_numpy().T
    visible = activity[list(VISIBLE_PROGRAMS)].to_numpy()
    # slide-major, so the first s slides are the same whatever slides_per_lineage is
    noise = rng["slides"].standard_normal((size.slides_per_lineage, *visible.shape)) * model.image_noise_sd
    module = genes.module.to_numpy()
    modules = np.stack([np.flatnonzero(module == p) for p in VISIBLE_PROGRAMS])
    return SimulatedCohort(patient=lineages["patient_id"].to_numpy(), visible=visible,
                           image=visible + noise.mean(axis=0), expression=expression, modules=modules)


def _standardise(values: np.ndarray, train: np.ndarray) -> np.ndarray:
    """(N, D) values centred and scaled per column by the mean and sd (ddof 0) of rows ``train``; a column
    constant on the training rows is only centred."""
    mean = values[train].mean(axis=0)
    sd = values[train].std(axis=0)
    return (values - mean) / np.where(sd > 0, sd, 1.0)


def rna_program_scores(expression: np.ndarray, modules: np.ndarray, train: np.ndarray) -> np.ndarray:
    """(N, P) program scores: the mean over each program's module genes of expression z-scored per gene with the
    training rows' statistics, then standardised per program with the training rows' statistics.

    Args:
        expression: (N, n_genes) log expression.
        modules: (P, m) gene column indices of each program's module.
        train: training row indices.
    """
    z = _standardise(expression, train)
    return _standardise(z[:, modules].mean(axis=2), train)


def fold_percentiles(cohort: SimulatedCohort, folds: Sequence[tuple[np.ndarray, np.ndarray]]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per lineage, the percentile rank of its own RNA profile: (oracle (L,), blind (L,), within_patient (L,)).

    ``oracle`` and ``blind`` rank the whole gallery of the lineage's fold (see the module docstring);
    ``within_patient`` is the oracle's rank among the held-out lineages of the query's own patient only (the
    intra-tumour part of the question). ``folds``: (train_rows, held_out_rows) over the L lineages, every lineage
    held out once. A lineage without another candidate (its fold, or its patient, holds out no other lineage:
    only possible with min_lineages 1) gets NaN.
    """
    n = len(cohort.patient)
    oracle, blind, within = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    for train, held in folds:
        if len(held) < 2:
            continue
        rna = rna_program_scores(cohort.expression, cohort.modules, train)[held]
        image = _standardise(cohort.image, train)[held]
        distance = ((image[:, None, :] - rna[None, :, :]) ** 2).sum(axis=2)  # (queries, gallery)
        truth = np.arange(len(held))
        oracle[held] = percentile(retrieval_ranks(-distance, truth), len(held))
        centroid_distance = (rna ** 2).sum(axis=1)  # the training centroid is 0 after standardising
        blind_scores = np.broadcast_to(-centroid_distance, distance.shape)
        blind[held] = percentile(retrieval_ranks(blind_scores, truth), len(held))
        for patient in np.unique(cohort.patient[held]):
            own = np.flatnonzero(cohort.patient[held] == patient)
            if len(own) >= 2:
                sub = distance[np.ix_(own, own)]
                within[held[own]] = percentile(retrieval_ranks(-sub, np.arange(len(own))), len(own))
    return oracle, blind, within


def _nanmean(values: np.ndarray) -> float:
    """Mean of the finite values (NaN when none)."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else np.nan


def _interval(values: np.ndarray, groups: np.ndarray, n_boot: int, level: float,
              seed: int) -> tuple[float, float, float]:
    """(estimate, low, high) of the mean of the finite ``values`` over ``groups``; NaN bounds with < 2 groups."""
    keep = np.isfinite(values)
    if len(np.unique(groups[keep])) < 2:
        return _nanmean(values), np.nan, np.nan
    return bootstrap_ci(values[keep], groups[keep], n_boot=n_boot, level=level, seed=seed)


def _check_folds(n_folds: int | None, sizes: Sequence[CohortSize]) -> None:
    """A clear error when some size cannot be split into ``n_folds`` folds with a gallery of two."""
    if n_folds is None:
        single = [s for s in sizes if s.max_lineages < 2]
        if single:
            raise ValueError(f"leave-one-patient-out (n_folds=None) with one lineage per patient ({single[0]}) "
                             "gives galleries of one candidate: pass an integer n_folds or allow ≥ 2 lineages")
        return
    smallest = min(s.n_patients for s in sizes)
    if not (isinstance(n_folds, (int, np.integer)) and 2 <= n_folds <= smallest):
        raise ValueError(f"n_folds={n_folds!r} must be an integer between 2 and the smallest n_patients in the "
                         f"sizes ({smallest}); lower it, drop the small sizes, or pass n_folds=None for "
                         "leave-one-patient-out")


def simulate_replicates(size: CohortSize | Sequence[Any], replicates: int = 40, seed: int = 0,
                        n_folds: int | None = 4, model: PowerModel = PowerModel(), n_boot: int = 1000,
                        level: float = 0.95) -> pd.DataFrame:
    """One row per replicate cohort of ``size``: ``replicate``, ``n_lineages``, ``oracle_percentile``,
    ``oracle_low``, ``oracle_high``, ``blind_percentile``, ``blind_low``, ``blind_high`` (mean percentile over
    the lineages and its patient-bootstrap ``level`` interval), ``within_patient_percentile`` (the oracle's mean
    percentile among the held-out lineages of each query's own patient), ``powered`` (oracle_low > 0.5).

    Args:
        size: a :class:`CohortSize` or a tuple :meth:`CohortSize.coerce` accepts.
        replicates: replicate cohorts (≥ 1).
        seed: the root seed (:func:`replicate_seed`).
        n_folds: K of the patient-level K-fold (≤ n_patients); None: leave one patient out.
        model: the generative model (:class:`PowerModel`).
        n_boot, level: the bootstrap (:func:`~gbhet_lib.evaluate.metrics.bootstrap_ci`).
    """
    size = CohortSize.coerce(size)
    _check_args(replicates, n_boot, level)
    _check_folds(n_folds, [size])
    rows = []
    for r in range(replicates):
        ss = replicate_seed(seed, size, r)
        cohort = simulate_cohort(ss, size, model)
        fold_seed, boot_seed = (int(x) for x in ss.generate_state(2))
        k = size.n_patients if n_folds is None else n_folds
        folds = patient_folds(cohort.patient, k, fold_seed)
        oracle, blind, within = fold_percentiles(cohort, folds)
        o = _interval(oracle, cohort.patient, n_boot, level, boot_seed)
        b = _interval(blind, cohort.patient, n_boot, level, boot_seed)
        rows.append({"replicate": r, "n_lineages": len(cohort.patient), "oracle_percentile": o[0],
                     "oracle_low": o[1], "oracle_high": o[2], "blind_percentile": b[0], "blind_low": b[1],
                     "blind_high": b[2], "within_patient_percentile": _nanmean(within),
                     "powered": bool(o[1] > CHANCE)})
    return pd.DataFrame(rows)


def _check_args(replicates: int, n_boot: int, level: float) -> None:
    if not (isinstance(replicates, (int, np.integer)) and replicates >= 1):
        raise ValueError(f"replicates={replicates!r} must be an integer ≥ 1 (about 40 for the book's table)")
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 100):
        raise ValueError(f"n_boot={n_boot!r} must be an integer ≥ 100 (e.g. 1000)")
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} must be in (0, 1), e.g. 0.95")


# ---------------------------------------------------------------------------------------------------- table
def power_table(sizes: Iterable[CohortSize | Sequence[Any]] | None = None, replicates: int = 40, seed: int = 0,
                n_folds: int | None = 4, model: PowerModel = PowerModel(), n_boot: int = 1000,
                level: float = 0.95) -> pd.DataFrame:
    """The power of each cohort size: one row per size (columns :data:`TABLE_COLUMNS`).

    Columns: the size (``n_patients``, ``min_lineages``, ``max_lineages``, ``slides_per_lineage``); the mean over
    replicates of the lineage count (``n_lineages_mean``) and of the slides to render (``slides_mean``); the
    oracle's mean percentile over replicates (``oracle_percentile``) and among each query's own patient's
    lineages only (``oracle_within_patient``); ``power`` (fraction of replicates whose
    oracle interval lies above 0.5) and its Monte-Carlo standard error ``power_se``; the blind predictor's mean
    percentile (``blind_percentile``, 0.5 by construction), the fraction of its intervals above 0.5
    (``blind_above_chance``) and containing 0.5 (``blind_coverage``); ``replicates``, ``n_folds`` (0 for
    leave-one-patient-out). ``attrs`` holds the model, seed, n_boot and level.

    Args: as :func:`simulate_replicates`; ``sizes`` default :func:`size_grid`.
    """
    sizes = size_grid() if sizes is None else [CohortSize.coerce(s) for s in sizes]
    if not sizes:
        raise ValueError("sizes is empty: pass at least one cohort size, e.g. size_grid()")
    _check_args(replicates, n_boot, level)
    _check_folds(n_folds, sizes)
    rows = []
    for size in sizes:
        reps = simulate_replicates(size, replicates, seed, n_folds, model, n_boot, level)
        power = float(reps["powered"].mean())
        rows.append({
            **dataclasses.asdict(size), "n_lineages_mean": float(reps["n_lineages"].mean()),
            "slides_mean": float(reps["n_lineages"].mean()) * size.slides_per_lineage,
            "oracle_percentile": float(reps["oracle_percentile"].mean()),
            "oracle_within_patient": float(reps["within_patient_percentile"].mean()), "power": power,
            "power_se": float(np.sqrt(power * (1 - power) / replicates)),
            "blind_percentile": float(reps["blind_percentile"].mean()),
            "blind_above_chance": float((reps["blind_low"] > CHANCE).mean()),
            "blind_coverage": float(((reps["blind_low"] <= CHANCE) & (reps["blind_high"] >= CHANCE)).mean()),
            "replicates": replicates, "n_folds": 0 if n_folds is None else int(n_folds)})
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    table.attrs.update(model=dataclasses.asdict(model), seed=seed, n_boot=n_boot, level=level)
    return table


def choose_size(table: pd.DataFrame, power: float = 0.8) -> pd.Series:
    """The row of ``table`` (:func:`power_table`) with the fewest expected slides to render (n_patients · mean
    lineages per patient · slides per lineage, added as ``expected_slides``) among those reaching ``power``; ties
    go to the higher power, then to fewer patients. To require e.g. two slides per lineage, pass
    ``table[table.slides_per_lineage >= 2]``.

    Raises:
        ValueError: ``power`` outside (0, 1], a table without the needed columns, or no size reaching ``power``
            (the message names the best one).
    """
    if not 0 < power <= 1:
        raise ValueError(f"power={power!r} must be in (0, 1], e.g. 0.8")
    needed = ["n_patients", "min_lineages", "max_lineages", "slides_per_lineage", "power"]
    missing = [c for c in needed if c not in table.columns]
    if missing or table.empty:
        raise ValueError(f"table lacks columns {missing} or rows: pass the DataFrame of power_table")
    slides = table["n_patients"] * (table["min_lineages"] + table["max_lineages"]) / 2 * table["slides_per_lineage"]
    ranked = table.assign(expected_slides=slides).sort_values(
        ["expected_slides", "power", "n_patients"], ascending=[True, False, True], kind="stable")
    reached = ranked[ranked["power"] >= power]
    if reached.empty:
        best = table.loc[table["power"].idxmax()]
        raise ValueError(f"no size in the table reaches power {power}: the best is {int(best['n_patients'])} "
                         f"patients × ({int(best['min_lineages'])}, {int(best['max_lineages'])}) lineages × "
                         f"{int(best['slides_per_lineage'])} slides with power {best['power']:.2f}; add larger "
                         "sizes (more patients or slides per lineage) to the grid, or lower the target power")
    return reached.iloc[0]


def plot_power(table: pd.DataFrame, power: float = 0.8) -> Figure:
    """Power (left) and mean percentile rank (right: oracle solid, blind dotted) against patients, one line per
    lineages × slides per lineage; dashed lines at the target ``power`` and at chance (0.5)."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    groups = table.groupby(["min_lineages", "max_lineages", "slides_per_lineage"], sort=True)
    for (lo, hi, slides), rows in groups:
        rows = rows.sort_values("n_patients")
        label = f"{lo}–{hi} lineages × {slides} slide{'s' if slides > 1 else ''}"
        line, = left.plot(rows["n_patients"], rows["power"], marker="o", label=label)
        if "power_se" in rows:
            left.fill_between(rows["n_patients"], rows["power"] - rows["power_se"], rows["power"] + rows["power_se"],
                              color=line.get_color(), alpha=0.15, linewidth=0)
        right.plot(rows["n_patients"], rows["oracle_percentile"], marker="o", color=line.get_color(), label=label)
        right.plot(rows["n_patients"], rows["blind_percentile"], linestyle=":", color=line.get_color())
    left.axhline(power, color="grey", linestyle="--", linewidth=1)
    right.axhline(CHANCE, color="grey", linestyle="--", linewidth=1)
    left.set(xlabel="patients", ylabel="power (interval above chance)", ylim=(-0.02, 1.02),
             title="oracle retrieval power")
    right.set(xlabel="patients", ylabel="mean percentile rank", ylim=(0.3, 1.0),
              title="oracle (solid) and image-blind (dotted)")
    left.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
