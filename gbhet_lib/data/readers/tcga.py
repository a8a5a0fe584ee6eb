"""TCGA expression, clinical and survival tables in their upstream formats, as AnnData / DataFrames.

Conventions: ``patient_id`` is the 12-character patient barcode TCGA-XX-XXXX; ``os_days`` is overall survival
in days (to death, or to last contact when alive); ``os_event`` is 1 = died, 0 = censored (nullable Int64);
``age`` in years at diagnosis; ``sex`` "female"/"male". TCGA placeholders ("[Not Available]", "[Unknown]", ...)
and empty strings become missing.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import anndata as ad
import numpy as np
import pandas as pd

from ._common import (ReaderError, blank_to_na, check_file, load_r, load_r_frame, patient_barcode,
                      pick_object, read_text_table, require_columns)

VERHAAK_WHAT = ("the Verhaak 2010 unified-core ClaNC840 table TCGA_unified_CORE_ClaNC840.txt "
                "(manifest entry verhaak2010_clanc840)")
CLINICAL_WHAT = ("a TCGA BCR Biotab patient file such as nationwidechildrens.org_clinical_patient_gbm.txt "
                 "(manifest entry tcga_gbm_clinical_patient)")
CDR_WHAT = ("the TCGA-CDR pan-cancer table clinical_survival_pancancer_atlas.RData (GerkeLab/TCGAclinical; "
            "manifest entry tcga_cdr_pancancer_rdata)")
CANCERSUBTYPES_WHAT = ("the CancerSubtypes package data GeneExp.rda / time.rda / status.rda (manifest entries "
                       "cancersubtypes_geneexp_rda, cancersubtypes_time_rda, cancersubtypes_status_rda)")
WANG_WHAT = ("Wang 2017 supplementary subtype calls NIHMS885291-supplement-3.txt (manifest entry "
             "wang2017_subtype_calls)")
VERHAAK_SUBTYPES = ["Proneural", "Neural", "Classical", "Mesenchymal"]
MARKER_GROUPS = ["PN", "NL", "CL", "MES"]
WANG_SUBTYPES = {"PN": "Proneural", "CL": "Classical", "MS": "Mesenchymal", "MES": "Mesenchymal"}
WANG_PVALUES = {"PN_pval_U133A": "pn_pval_u133a", "CL_pval_U133A": "cl_pval_u133a", "MES_pval_U133A": "mes_pval_u133a",
                "PN_pval": "pn_pval_rnaseq", "CL_pval": "cl_pval_rnaseq", "MES_pval": "mes_pval_rnaseq"}
CDR_COLUMNS = ["bcr_patient_barcode", "acronym", "gender", "age_at_initial_pathologic_diagnosis",
               "histological_type", "karnofsky_performance_score", "radiation_therapy", "race",
               "liu_vital_status", "tumor_status", "OS", "OS.time", "DSS", "DSS.time", "PFI", "PFI.time",
               "Redaction", "days_to_death", "days_to_last_followup", "year_of_initial_pathologic_diagnosis",
               "tissue_source_site"]
# Biotab files carry current names in header row 1 and legacy names in row 2; either is accepted.
_CLINICAL_FIELDS = {
    "barcode": ("bcr_patient_barcode",),
    "vital_status": ("vital_status",),
    "days_to_death": ("death_days_to", "days_to_death"),
    "days_to_last_followup": ("last_contact_days_to", "days_to_last_followup"),
    "age": ("age_at_initial_pathologic_diagnosis",),
    "sex": ("gender",),
}


def _numbers(values: pd.Series, path: Path | str, column: str, first_line: int = 2) -> pd.Series:
    """Floats from text (placeholders → NaN); any other non-number is an error naming the line."""
    text = blank_to_na(values)
    numbers = pd.to_numeric(text, errors="coerce")
    bad = text.notna() & numbers.isna()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ReaderError(f"{path}: line {row + first_line}, column {column!r} holds {text.iloc[row]!r}, not a "
                          "number. Fix the value or replace it with [Not Available].")
    return numbers.astype(float)


def _events(vital: pd.Series, path: Path | str, column: str, first_line: int = 2) -> pd.Series:
    """1 for Dead/Deceased, 0 for Alive/Living, missing otherwise-missing; anything else is an error."""
    text = blank_to_na(vital).map(lambda v: v.lower() if isinstance(v, str) else v)
    codes = text.map({"dead": 1, "deceased": 1, "alive": 0, "living": 0})
    bad = text.notna() & codes.isna()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ReaderError(f"{path}: line {row + first_line}, column {column!r} holds {vital.iloc[row]!r}; "
                          "expected Dead or Alive.")
    return codes.astype("Int64")


def _sex(gender: pd.Series) -> pd.Series:
    return blank_to_na(gender).map(lambda v: v.lower() if isinstance(v, str) else v)


def _unique_index(ids: list[str], path: Path | str, what: str) -> pd.Index:
    index = pd.Index(ids, name="patient_id")
    if index.has_duplicates:
        dup = index[index.duplicated()][0]
        raise ReaderError(f"{path}: patient {dup} appears more than once. Expected {what} (one row a patient).")
    return index


def _physical_line(p: Path, table_row: int) -> int:
    """The 1-based line of the file that holds row ``table_row`` (0-based) of a table read with pandas, which skips
    empty lines (the ClaNC file has one)."""
    with p.open(encoding="utf-8", errors="replace", newline="") as fh:
        filled = [i for i, line in enumerate(fh.read().splitlines()) if line != ""]
    return filled[table_row] + 1 if table_row < len(filled) else table_row + 1


def read_verhaak_clanc840(path: str | Path) -> ad.AnnData:
    """Verhaak 2010 TCGA-GBM unified-core expression of the 840 ClaNC genes (centred log values).

    Layout: row 1 "CLID", a description, then aliquot barcodes; row 2 "Subtype" then each sample's subtype;
    then one gene a row (symbol, marker group, values). Returns AnnData 173 samples × 840 genes:
    obs index = aliquot barcode, ``obs['patient_id']``, ``obs['subtype']`` (PN 53, NL 26, CL 38, MES 56);
    ``var['marker_of']`` = PN/NL/CL/MES, missing for the 155 genes that mark no subtype.
    """
    p = check_file(path, VERHAAK_WHAT)
    raw = read_text_table(p, VERHAAK_WHAT, header=None, dtype=str, keep_default_na=False)
    if raw.shape[0] < 3 or raw.shape[1] < 3 or raw.iat[0, 0].strip() != "CLID" \
            or raw.iat[1, 0].strip().lower() != "subtype":
        raise ReaderError(f"{p}: not the ClaNC840 layout (row 1 must start with 'CLID' and the sample barcodes, "
                          f"row 2 with 'Subtype'). Expected {VERHAAK_WHAT}.")
    samples = [s.strip() for s in raw.iloc[0, 2:]]
    subtypes = [s.strip() for s in raw.iloc[1, 2:]]
    unknown = [(s, t) for s, t in zip(samples, subtypes) if t not in VERHAAK_SUBTYPES]
    if unknown:
        raise ReaderError(f"{p}: sample {unknown[0][0]} has subtype {unknown[0][1]!r}; expected one of "
                          f"{VERHAAK_SUBTYPES}.")
    genes = raw.iloc[2:, 0].str.strip()
    if genes.duplicated().any():
        raise ReaderError(f"{p}: gene {genes[genes.duplicated()].iloc[0]!r} has more than one row.")
    values = raw.iloc[2:, 2:].apply(pd.to_numeric, errors="coerce")
    if values.isna().any().any():
        row, col = map(int, np.argwhere(values.isna().to_numpy())[0])
        raise ReaderError(f"{p}: gene {genes.iloc[row]!r} (line {_physical_line(p, row + 2)}), sample "
                          f"{samples[col]} has {raw.iat[row + 2, col + 2]!r}, not a number.")
    markers = blank_to_na(raw.iloc[2:, 1]).where(lambda m: m.isin(MARKER_GROUPS))
    obs = pd.DataFrame({"patient_id": patient_barcode(samples, p, "sample column"),
                        "subtype": pd.Categorical(subtypes, categories=VERHAAK_SUBTYPES)},
                       index=pd.Index(samples, name="sample_id"))
    var = pd.DataFrame({"marker_of": pd.Categorical(markers.to_numpy(), categories=MARKER_GROUPS)},
                       index=pd.Index(genes.to_numpy(), name="gene"))
    return ad.AnnData(X=values.to_numpy(dtype=np.float64).T, obs=obs, var=var)


def _clinical_header(p: Path) -> tuple[list[str], list[str], int]:
    """(current names, legacy names, number of header lines) of a Biotab file (3 header lines) or a plain table."""
    with p.open(encoding="utf-8", errors="replace") as fh:
        head = [fh.readline().rstrip("\r\n").split("\t") for _ in range(3)]
    if len(head[2]) and head[2][0].startswith("CDE_ID"):
        return head[0], head[1], 3
    return head[0], head[0], 1


def read_tcga_clinical_patient(path: str | Path) -> pd.DataFrame:
    """A TCGA BCR Biotab patient clinical file (e.g. nationwidechildrens.org_clinical_patient_gbm.txt).

    Returns one row per patient (index ``patient_id``; 548 for the GBM file): ``os_days``, ``os_event``, ``age``,
    ``sex``, then every column of the file (current names; placeholders → missing; all-numeric columns as
    numbers; the file's own ``patient_id``, the 4-character participant code, is renamed ``participant_code``).
    ``os_days`` is days to death for the dead and days to last contact for the living.
    """
    p = check_file(path, CLINICAL_WHAT)
    current, legacy, n_header = _clinical_header(p)
    table = read_text_table(p, CLINICAL_WHAT, dtype=str, keep_default_na=False, header=None, skiprows=n_header,
                            names=current)
    alias = {**{old: new for old, new in zip(legacy, current)}, **{c: c for c in current}}
    cols = {key: next((alias[n] for n in names if n in alias), None) for key, names in _CLINICAL_FIELDS.items()}
    needed = ["barcode", "vital_status", "days_to_death", "days_to_last_followup"]
    absent = [_CLINICAL_FIELDS[k][0] for k in needed if cols[k] is None]
    if absent:
        require_columns(table, absent, p, f"Expected {CLINICAL_WHAT}.")
    first_line = n_header + 1
    event = _events(table[cols["vital_status"]], p, cols["vital_status"], first_line)
    death = _numbers(table[cols["days_to_death"]], p, cols["days_to_death"], first_line)
    contact = _numbers(table[cols["days_to_last_followup"]], p, cols["days_to_last_followup"], first_line)
    out = pd.DataFrame({
        "os_days": death.where(event.eq(1).fillna(False), contact.where(event.eq(0).fillna(False))),
        "os_event": event,
        "age": _numbers(table[cols["age"]], p, cols["age"], first_line) if cols["age"] else np.nan,
        "sex": _sex(table[cols["sex"]]) if cols["sex"] else pd.NA,
    })
    rest = {c: _numeric_if_possible(blank_to_na(table[c])) for c in table.columns if c not in out}
    out = pd.concat([out, pd.DataFrame(rest).rename(columns={"patient_id": "participant_code"})], axis=1)
    out.index = _unique_index(patient_barcode(table[cols["barcode"]], p, "data row"), p, CLINICAL_WHAT)
    return out


def _numeric_if_possible(values: pd.Series) -> pd.Series:
    """The column as floats when every present value is a number, else unchanged."""
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers if values.notna().sum() and (numbers.notna() == values.notna()).all() else values


def read_tcga_cdr_rdata(path: str | Path, projects: Sequence[str] | None = ("GBM", "LGG")) -> pd.DataFrame:
    """TCGA-CDR curated survival (Liu et al., Cell 2018) from the pan-cancer ``.RData`` (11,165 patients).

    ``projects`` are TCGA study codes (None: all 33). Returns index ``patient_id`` (GBM 596 + LGG 515 rows by
    default): ``os_days`` (OS.time), ``os_event`` (OS), ``age``, ``sex``, then the CDR columns ``CDR_COLUMNS``
    (OS/DSS/PFI with times, vital status, KPS, histology, ...; placeholders → missing).
    Reads only these columns (a few seconds; rdata would parse all 750 in over a minute).
    """
    p = Path(path)
    table = load_r_frame(p, CDR_WHAT, CDR_COLUMNS)
    if projects is not None:
        wanted = [str(x).upper() for x in projects]
        available = sorted(set(table["acronym"].dropna()))
        unknown = [x for x in wanted if x not in available]
        if unknown:
            raise ReaderError(f"{p}: no project(s) {unknown} in the CDR table; available: {', '.join(available)}.")
        table = table[table["acronym"].isin(wanted)]
    table = table.reset_index(drop=True)
    for col in table.columns[table.dtypes == object]:
        table[col] = blank_to_na(table[col])
    out = pd.DataFrame({"os_days": table["OS.time"].astype(float),
                        "os_event": pd.array(table["OS"].round(), dtype="Int64"),
                        "age": pd.to_numeric(table["age_at_initial_pathologic_diagnosis"]).astype(float),
                        "sex": _sex(table["gender"])})
    out = pd.concat([out, table], axis=1)
    out.index = _unique_index(patient_barcode(table["bcr_patient_barcode"], p, "row"), p, CDR_WHAT)
    return out


def _r_vector(path: str | Path, name: str) -> np.ndarray:
    p = Path(path)
    value = pick_object(load_r(p, CANCERSUBTYPES_WHAT), p, CANCERSUBTYPES_WHAT, name=name)
    if not isinstance(value, np.ndarray) or value.ndim != 1:
        raise ReaderError(f"{p}: {name!r} is not a numeric vector. Expected {CANCERSUBTYPES_WHAT}.")
    return value


def read_cancersubtypes_gbm(geneexp_rda: str | Path, time_rda: str | Path, status_rda: str | Path) -> ad.AnnData:
    """TCGA-GBM data of the CancerSubtypes R package: 100 patients × 1,500 genes with overall survival.

    ``GeneExp`` is a genes × patients matrix (centred log values, platform undocumented); ``time`` (days) and
    ``status`` (1 = died) are unnamed vectors in the matrix's patient order. Returns AnnData (obs index = patient
    barcode) with obs ``patient_id``, ``os_days``, ``os_event``.
    """
    p = Path(geneexp_rda)
    matrix = pick_object(load_r(p, CANCERSUBTYPES_WHAT), p, CANCERSUBTYPES_WHAT, name="GeneExp")
    if getattr(matrix, "ndim", 0) != 2 or len(getattr(matrix, "coords", {})) != 2:
        raise ReaderError(f"{p}: 'GeneExp' is not a matrix with gene and patient names. Expected "
                          f"{CANCERSUBTYPES_WHAT}.")
    genes = [str(g) for g in matrix.coords[matrix.dims[0]].values]
    patients = [str(s) for s in matrix.coords[matrix.dims[1]].values]
    time, status = _r_vector(time_rda, "time"), _r_vector(status_rda, "status")
    if not len(time) == len(status) == len(patients):
        raise ReaderError(f"{time_rda} / {status_rda}: {len(time)} times and {len(status)} statuses for "
                          f"{len(patients)} patients in {p}. The three files must come from the same package "
                          "version.")
    if not np.isin(status, [0, 1]).all():
        raise ReaderError(f"{status_rda}: status must be 0 (censored) or 1 (died); found "
                          f"{sorted(set(status.tolist()) - {0, 1})[:5]}.")
    ids = _unique_index(patient_barcode(patients, p, "patient column"), p, CANCERSUBTYPES_WHAT)
    obs = pd.DataFrame({"patient_id": ids, "os_days": time.astype(float),
                        "os_event": pd.array(status, dtype="Int64")}, index=ids.rename("sample_id"))
    return ad.AnnData(X=np.asarray(matrix.values, dtype=np.float64).T, obs=obs,
                      var=pd.DataFrame(index=pd.Index(genes, name="gene")))


def read_wang2017_subtype_calls(path: str | Path) -> pd.DataFrame:
    """Wang 2017 (Cancer Cell) per-sample PN/CL/MES calls on U133A and RNA-seq (162 TCGA-GBM patients).

    Returns index ``patient_id``: ``sample_u133a``, ``sample_rnaseq`` (barcodes with '-'), ``subtype_u133a``,
    ``subtype_rnaseq`` (Proneural/Classical/Mesenchymal), the six subtype p-values, ``pearson_r`` (U133A vs
    RNA-seq profile), ``discordant`` (the authors' YES flag). The table's footnote (in one row's
    "Disconcordant" cell) says 18 pairs with Pearson r < 0.15 were discarded: filter on ``pearson_r``.
    """
    p = check_file(path, WANG_WHAT)
    table = read_text_table(p, WANG_WHAT, dtype=str, keep_default_na=False)
    require_columns(table, ["Sample_Id_U133A", "Subtype_U133A", "Sample_Id_RNAseq", "Subtype",
                            "PearsonCorCoe_of_RAND5000Genes", "Disconcordant", *WANG_PVALUES], p,
                    f"Expected {WANG_WHAT}.")
    out = pd.DataFrame({
        "sample_u133a": table["Sample_Id_U133A"].str.strip().str.replace(".", "-", regex=False),
        "sample_rnaseq": table["Sample_Id_RNAseq"].str.strip().str.replace(".", "-", regex=False),
        "subtype_u133a": _wang_subtypes(table["Subtype_U133A"], p, "Subtype_U133A"),
        "subtype_rnaseq": _wang_subtypes(table["Subtype"], p, "Subtype"),
        **{name: _numbers(table[col], p, col) for col, name in WANG_PVALUES.items()},
        "pearson_r": _numbers(table["PearsonCorCoe_of_RAND5000Genes"], p, "PearsonCorCoe_of_RAND5000Genes"),
        "discordant": table["Disconcordant"].str.strip().str.upper().eq("YES"),
    })
    out.index = _unique_index(patient_barcode(table["Sample_Id_U133A"], p, "data row"), p, WANG_WHAT)
    return out


def _wang_subtypes(codes: pd.Series, path: Path, column: str) -> pd.Categorical:
    text = codes.str.strip().str.upper()
    bad = ~text.isin(list(WANG_SUBTYPES))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ReaderError(f"{path}: line {row + 2}, column {column!r} holds {codes.iloc[row]!r}; expected PN, CL "
                          "or MS.")
    return pd.Categorical(text.map(WANG_SUBTYPES), categories=["Proneural", "Classical", "Mesenchymal"])


@dataclass
class ClinicalJoin:
    """How an expression object matched a clinical table (counts of samples and of distinct patients)."""

    n_samples: int
    n_patients: int
    n_clinical_patients: int
    n_matched_samples: int
    n_matched_patients: int
    unmatched_patients: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        shown = ", ".join(self.unmatched_patients[:5]) + (" ..." if len(self.unmatched_patients) > 5 else "")
        return (f"{self.n_matched_patients} of {self.n_patients} patients ({self.n_matched_samples} of "
                f"{self.n_samples} samples) matched the clinical table ({self.n_clinical_patients} patients)"
                + (f"; no clinical data for {len(self.unmatched_patients)}: {shown}" if shown else ""))


def attach_clinical(adata: ad.AnnData, clinical: pd.DataFrame, on: str = "patient_id",
                    columns: Sequence[str] | None = None) -> tuple[ad.AnnData, ClinicalJoin]:
    """A copy of ``adata`` with clinical columns joined into ``obs`` (missing where a patient has no row).

    ``clinical`` is indexed by patient id (index named ``on``, as the readers here return it) or has an ``on``
    column.
    ``columns`` picks clinical columns (default all). The report is returned and kept in ``uns['clinical_join']``.
    """
    if on not in adata.obs:
        raise ReaderError(f"attach_clinical: adata.obs has no {on!r} column (has {list(adata.obs.columns)}). "
                          "Pass on=<obs column holding patient barcodes>.")
    table = clinical.set_index(on) if on in clinical.columns and clinical.index.name != on else clinical
    if table.index.has_duplicates:
        dup = table.index[table.index.duplicated()][0]
        raise ReaderError(f"attach_clinical: patient {dup!r} has more than one clinical row; keep one per patient.")
    columns = list(table.columns) if columns is None else list(columns)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ReaderError(f"attach_clinical: the clinical table has no column(s) {missing}.")
    clash = [c for c in columns if c in adata.obs.columns]
    if clash:
        raise ReaderError(f"attach_clinical: obs already has column(s) {clash}; drop them from obs or pass "
                          "columns= without them.")
    ids = adata.obs[on].astype(str)
    matched = ids.isin(table.index)
    out = adata.copy()
    joined = table[columns].reindex(ids.to_numpy())
    joined.index = out.obs.index
    out.obs = pd.concat([out.obs, joined], axis=1)
    report = ClinicalJoin(n_samples=adata.n_obs, n_patients=ids.nunique(), n_clinical_patients=len(table),
                          n_matched_samples=int(matched.sum()), n_matched_patients=ids[matched].nunique(),
                          unmatched_patients=sorted(set(ids[~matched])))
    out.uns["clinical_join"] = asdict(report)
    return out, report
