"""Synthetic gene universe: annotation (ids, symbols, chromosomes), program modules, loadings, drivers."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .programs import PROGRAM_NAMES

# Approximate protein-coding gene counts per human chromosome (Ensembl), used only as sampling weights,
# and chromosome lengths in Mb for positions.
CHROMOSOMES: tuple[str, ...] = tuple([str(i) for i in range(1, 23)] + ["X", "Y"])
_GENES_PER_CHROMOSOME = (2050, 1260, 1080, 750, 880, 1040, 920, 680, 780, 730, 1310, 1030,
                         320, 620, 600, 850, 1180, 270, 1470, 540, 230, 440, 840, 60)
_LENGTH_MB = (248, 242, 198, 190, 181, 171, 159, 145, 138, 134, 135, 133, 114, 107, 102, 90, 83, 80,
              59, 64, 47, 51, 156, 57)

#: Demo gene universe: six program modules of 150 genes ("sized like real pathways": MSigDB Hallmark sets hold
#: 32–200 genes) among 2500 genes, a fifth of each module drivers. Modules this size are the largest communities
#: of the PPI graph (:func:`~gbhet_lib.data.synthetic.ppi.make_ppi_edges` draws background complexes of 10–60
#: genes), so folding Louvain's communities to the paper's K = 7 tokens keeps each module as its own token.
DEMO_N_GENES = 2500
DEMO_MODULE_SIZE = 150
DEMO_N_DRIVERS = 30
#: share of a module's genes that are drivers
DRIVER_FRACTION = 0.2


@dataclass(frozen=True)
class GeneUniverse:
    """Genes of the synthetic cohort.

    Attributes:
        annotation: index ``gene_id`` (unversioned, ``ENSG9…``, never a real Ensembl id); columns
            ``gene_version`` (int), ``symbol``, ``chromosome``, ``start`` (bp), ``end`` (bp), ``biotype``.
        module: per gene, the program it belongs to, or ``""`` for background genes.
        loadings: genes × programs, log-fold change per unit of program activity.
        drivers: program → its driver genes (symbols), the strongest-loading genes of the module.
        log_base_mean: per gene, natural log of the mean count at size factor 1 and zero activity.
        dispersion: per gene, negative-binomial dispersion φ (variance = μ + φ μ²).
    """

    annotation: pd.DataFrame
    module: pd.Series
    loadings: pd.DataFrame
    drivers: dict[str, list[str]]
    log_base_mean: pd.Series
    dispersion: pd.Series

    @property
    def symbols(self) -> pd.Index:
        return pd.Index(self.annotation["symbol"])

    def module_symbols(self) -> dict[str, list[str]]:
        """Program → symbols of its module genes, in gene order."""
        sym = self.annotation["symbol"]
        return {p: sym[self.module == p].tolist() for p in PROGRAM_NAMES}

    def module_loadings(self) -> dict[str, dict[str, float]]:
        """Program → {module gene symbol: loading (log-fold change per unit activity)}, rounded to 1e-6."""
        sym = self.annotation["symbol"]
        return {p: {sym[g]: round(float(self.loadings.at[g, p]), 6) for g in self.module.index[self.module == p]}
                for p in PROGRAM_NAMES}


def pathway_module_size(n_genes: int) -> tuple[int, int]:
    """``(module_size, n_drivers)`` for a universe of ``n_genes``: pathway-sized modules (``DEMO_MODULE_SIZE``, at
    most 6 % of the genes each, so six modules take at most 36 %) with ``DRIVER_FRACTION`` of them drivers.

    For small test universes, where 150-gene modules do not fit: 400 genes → (24, 5). Modules smaller than the
    largest background complexes (60 genes) are still Louvain communities, but folding to K = 7 tokens no longer
    keeps them.
    """
    if n_genes < 2 * 6 + 1:
        raise ValueError(f"pathway_module_size: n_genes={n_genes} is too small for six modules of at least 2 genes")
    module_size = max(2, min(DEMO_MODULE_SIZE, (6 * n_genes) // 100))
    return module_size, max(1, int(round(DRIVER_FRACTION * module_size)))


def make_gene_universe(
    rng: np.random.Generator, n_genes: int = DEMO_N_GENES, module_size: int = DEMO_MODULE_SIZE,
    n_drivers: int = DEMO_N_DRIVERS, lncrna_fraction: float = 0.08
) -> GeneUniverse:
    """Draw the gene universe.

    Module genes are spread over random chromosomes (so chromosome tokens mix programs, as in real
    genomes); drivers load with log-fold 0.9–1.3 per unit activity, other module genes 0.3–0.7. A small
    fraction of background genes are lncRNAs (the paper keeps protein-coding genes only).

    Args:
        n_genes: genes in total (default ``DEMO_N_GENES``).
        module_size: genes per program module (default ``DEMO_MODULE_SIZE``, pathway-sized; see
            :func:`pathway_module_size` for smaller universes).
        n_drivers: drivers per module, its strongest-loading genes (default ``DEMO_N_DRIVERS``).
        lncrna_fraction: share of background genes that are lncRNAs.
    """
    n_module = module_size * len(PROGRAM_NAMES)
    if not 0 < n_drivers <= module_size or n_module >= n_genes:
        raise ValueError(f"need 0 < n_drivers <= module_size and {len(PROGRAM_NAMES)} x module_size < n_genes; "
                         f"got n_drivers={n_drivers}, module_size={module_size}, n_genes={n_genes}")
    gene_ids = [f"ENSG9{i:010d}" for i in range(1, n_genes + 1)]
    symbols = [f"SG{i:05d}" for i in range(1, n_genes + 1)]
    weights = np.asarray(_GENES_PER_CHROMOSOME, float)
    chrom_idx = rng.choice(len(CHROMOSOMES), size=n_genes, p=weights / weights.sum())
    length_bp = np.asarray(_LENGTH_MB, float)[chrom_idx] * 1e6
    start = (rng.random(n_genes) * (length_bp - 2e5)).astype(np.int64) + 1
    end = start + rng.integers(2_000, 150_000, n_genes)

    order = rng.permutation(n_genes)
    module = np.full(n_genes, "", dtype=object)
    loadings = np.zeros((n_genes, len(PROGRAM_NAMES)))
    drivers: dict[str, list[str]] = {}
    for k, program in enumerate(PROGRAM_NAMES):
        members = np.sort(order[k * module_size:(k + 1) * module_size])
        module[members] = program
        strength = np.concatenate([rng.uniform(0.9, 1.3, n_drivers), rng.uniform(0.3, 0.7, module_size - n_drivers)])
        driver_members = rng.permutation(members)
        loadings[driver_members, k] = strength
        drivers[program] = [symbols[i] for i in sorted(driver_members[:n_drivers])]
    background = np.flatnonzero(module == "")
    biotype = np.full(n_genes, "protein_coding", dtype=object)
    biotype[rng.choice(background, size=int(lncrna_fraction * len(background)), replace=False)] = "lncRNA"

    index = pd.Index(gene_ids, name="gene_id")
    annotation = pd.DataFrame({
        "gene_version": rng.integers(1, 20, n_genes), "symbol": symbols,
        "chromosome": np.asarray(CHROMOSOMES, dtype=object)[chrom_idx], "start": start, "end": end,
        "biotype": biotype,
    }, index=index)
    return GeneUniverse(
        annotation=annotation,
        module=pd.Series(module, index=index, name="module"),
        loadings=pd.DataFrame(loadings, index=index, columns=list(PROGRAM_NAMES)),
        drivers=drivers,
        log_base_mean=pd.Series(rng.normal(4.0, 1.5, n_genes), index=index, name="log_base_mean"),
        dispersion=pd.Series(np.exp(rng.normal(np.log(0.12), 0.5, n_genes)), index=index, name="dispersion"),
    )
