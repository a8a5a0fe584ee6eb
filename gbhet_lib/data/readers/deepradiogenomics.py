"""The real data of chapter 8's reference profile: the demo data of Smedley et al. (2020), deepRadiogenomics.

Three files of ``novasmedley/deepRadiogenomics`` @ a1cfde8 (manifest entries ``verhaak2010_clanc840``,
``tcga_gbm_clinical_patient``, ``vasari_annotations``) feed the subtype validation (Verhaak subtype from the 840
ClaNC genes, gene-set masking) and the VASARI illustration:

* :func:`read_clanc840` — expression 173 samples × 840 genes, each sample's Verhaak subtype, each gene's marker
  group (the parse itself is :func:`~gbhet_lib.data.readers.read_verhaak_clanc840`; this adds a strict layout
  check that names the file's physical line);
* :func:`verhaak_gene_sets` — the four subtypes' marker sets and all 840 genes, for masking;
* :func:`read_vasari` / :func:`binarise_vasari_answers` — the neuroradiologist's text answers and their 0/1
  traits (the real-data counterpart of :func:`gbhet_lib.mri.traits.binarise_vasari`, same trait names);
* :func:`read_clinical_patient` — overall survival, age, sex, race from the Biotab patient file (the parse is
  :func:`~gbhet_lib.data.readers.read_tcga_clinical_patient`);
* :func:`load_deepradiogenomics` — all of it, fetched and verified through :func:`gbhet_lib.data.fetch.fetch`.

Conventions as in :mod:`.tcga`: ``patient_id`` is the 12-character patient barcode TCGA-XX-XXXX
(:func:`patient_barcode`); expression sample ids are the file's aliquot barcodes (TCGA-02-0003-01A-01).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ...mri.traits import TRAITS
from ..fetch import fetch
from ..manifest import Manifest, load_manifest
from ._common import _BARCODE, ReaderError, check_file, read_text_table
from ._common import patient_barcode as _patient_barcodes
from .tcga import (MARKER_GROUPS, VERHAAK_SUBTYPES, VERHAAK_WHAT, read_tcga_clinical_patient,
                   read_verhaak_clanc840)

__all__ = ["DEEPRADIOGENOMICS_INPUTS", "DeepRadiogenomicsData", "MARKER_SUBTYPE", "VASARI_ANSWER_TRAITS",
           "VASARI_TRAIT_RULES", "binarise_vasari_answers", "load_deepradiogenomics", "patient_barcode",
           "read_clanc840", "read_clinical_patient", "read_vasari", "verhaak_gene_sets"]

VASARI_WHAT = ("the Smedley 2020 demo VASARI annotations vasari_annotations.csv (manifest entry vasari_annotations; "
               "index column = patient barcode, then research.id, scan.type, f9..., f5..., f6..., f7..., f14..., "
               "f10..., comments, study.date)")

#: manifest entries read by :func:`load_deepradiogenomics`, by role
DEEPRADIOGENOMICS_INPUTS: dict[str, str] = {"expression": "verhaak2010_clanc840",
                                            "clinical": "tcga_gbm_clinical_patient",
                                            "vasari": "vasari_annotations"}
#: the ClaNC file's gene marker code → the Verhaak subtype it marks
MARKER_SUBTYPE: dict[str, str] = dict(zip(MARKER_GROUPS, VERHAAK_SUBTYPES))
#: key of the all-genes set in :func:`verhaak_gene_sets`
ALL_GENES_SET = "all_840"

#: VASARI feature (the column-name prefix in the annotation file) → our trait (:data:`gbhet_lib.mri.traits.TRAITS`).
#: The one place where feature numbers meet trait names.
VASARI_ANSWER_TRAITS: dict[str, str] = {"f5": "enhancing", "f6": "ncet", "f7": "necrosis", "f9": "focal",
                                        "f10": "infiltrative", "f14": "edema"}

# Answers (lower case, single spaces) → 0/1, per rule (Smedley 2020 setup.py, §3.2 of related_papers.md).
_PROPORTION = {"minimal": 0, "less than 1/3": 0, "between 1/3 and 2/3": 1, "more than 2/3": 1}  # ≥ 1/3 → 1
_FOCAL = {"focal": 1, "multifocal or multicentric": 0, "multifocal": 0, "multicentric": 0}  # focal → 1
_INFILTRATIVE = {"expansive (t1~flair)": 0, "expansive": 0,  # mixed or infiltrative → 1
                 "mixed (t1 less than flair)": 1, "mixed": 1,
                 "infiltrative (t1 much smaller than flair)": 1, "infiltrative": 1}
#: answers that carry no trait value: the trait is missing (NaN) for that patient, in that column only
VASARI_UNRATED: frozenset[str] = frozenset({"n/a", "indeterminate"})
#: VASARI feature → (answer → 0/1)
VASARI_TRAIT_RULES: dict[str, dict[str, int]] = {"f5": _PROPORTION, "f6": _PROPORTION, "f7": _PROPORTION,
                                                 "f14": _PROPORTION, "f9": _FOCAL, "f10": _INFILTRATIVE}
_FREE_TEXT = ("comments", "study.date")  # free text and (possibly real) scan dates: not carried by default


def patient_barcode(sample_id: str) -> str:
    """The 12-character TCGA patient barcode (``TCGA-XX-XXXX``) of a patient/sample/aliquot barcode.

    ``"TCGA-02-0003-01A-01"`` → ``"TCGA-02-0003"``; R-mangled ids with '.' (``TCGA.02.0003.01A``) and lower case
    are accepted.

    Raises:
        ReaderError: ``sample_id`` is not a TCGA barcode.
    """
    match = _BARCODE.match(str(sample_id).strip())
    if match is None:
        raise ReaderError(f"patient_barcode: {sample_id!r} is not a TCGA barcode (TCGA-XX-XXXX[-...]). Pass a TCGA "
                          "patient, sample or aliquot barcode.")
    return f"TCGA-{match[1]}-{match[2]}".upper()


# --- Verhaak 2010 ClaNC840 -------------------------------------------------------------------------------------

def _check_clanc840_lines(p: Path) -> None:
    """Strict layout check of the ClaNC840 text, naming the physical line (CRLF and blank lines allowed).

    Checks every line's field count, gene symbol, marker code and values; the parse that follows
    (:func:`read_verhaak_clanc840`) then checks the subtypes and repeated genes.
    """
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ReaderError(f"{p}: not a UTF-8 text file (an R or Excel file?). Expected {VERHAAK_WHAT}.") from None
    if len(lines) < 3:
        raise ReaderError(f"{p}: has {len(lines)} line(s); expected a header line (CLID ...), a Subtype line and one "
                          f"line a gene. Expected {VERHAAK_WHAT}.")
    header = lines[0].split("\t")
    if header[0].strip() != "CLID" or not lines[1].split("\t")[0].strip().lower() == "subtype":
        raise ReaderError(f"{p}: not the ClaNC840 layout (line 1 must start with 'CLID' and the sample barcodes, "
                          f"line 2 with 'Subtype'). Expected {VERHAAK_WHAT}.")
    width = len(header)
    allowed = ("", *MARKER_GROUPS)
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue  # the upstream file has one blank line (line 251)
        fields = line.split("\t")
        what = "the Subtype line" if number == 2 else f"gene {fields[0].strip()!r}"
        if len(fields) != width:
            raise ReaderError(f"{p}: line {number} ({what}) has {len(fields)} tab-separated fields, line 1 has "
                              f"{width} (CLID, description, {width - 2} samples). Fix the row: a missing or extra "
                              "tab, or a truncated file (fetch it again).")
        if number == 2:
            continue
        if not fields[0].strip():
            raise ReaderError(f"{p}: line {number} has no gene symbol in column 1. Fill it or delete the row.")
        code = fields[1].strip()
        if code not in allowed:
            raise ReaderError(f"{p}: line {number} ({what}) has marker code {code!r} in column 2; expected one of "
                              f"{', '.join(MARKER_GROUPS)} or empty (a ClaNC gene that marks no subtype).")
        try:
            [float(v) for v in fields[2:]]
        except ValueError:
            col = next(j for j, v in enumerate(fields[2:], start=2) if not _is_float(v))
            raise ReaderError(f"{p}: line {number} ({what}), column {col + 1} (sample {header[col].strip()}) holds "
                              f"{fields[col]!r}, not a number. Fix the value; the table has no missing values "
                              "upstream, so the file may be damaged (fetch it again).") from None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_clanc840(path: str | Path) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """The Verhaak 2010 unified-core ClaNC840 file as (expression, subtype, markers).

    Layout (tab-separated, CRLF): line 1 ``CLID``, a description, then 173 aliquot barcodes; line 2 ``Subtype``,
    ``GO genes``, then each sample's subtype; then one line a gene: symbol, marker code (PN, NL, CL, MES, or
    empty for the 155 genes that mark no subtype), 173 values. One blank line (251) is skipped.

    Returns:
        expression: float64 DataFrame 173 samples × 840 genes (index ``sample_id`` = aliquot barcode, columns
            ``gene``), centred log values (−10.05 … 13.22), no missing values.
        subtype: categorical Series ``sample_id`` → Proneural 53 / Neural 26 / Classical 38 / Mesenchymal 56
            (categories in that order), none missing.
        markers: categorical Series ``gene`` → PN 178 / NL 129 / CL 162 / MES 216, NaN for 155 genes.

    Raises:
        ReaderError: naming the file, the line (gene or sample) and the fix.
    """
    p = check_file(path, VERHAAK_WHAT)
    _check_clanc840_lines(p)
    adata = read_verhaak_clanc840(p)
    samples = pd.Index(adata.obs_names, name="sample_id")
    genes = pd.Index(adata.var_names, name="gene")
    expression = pd.DataFrame(np.asarray(adata.X, dtype=np.float64), index=samples, columns=genes)
    subtype = pd.Series(adata.obs["subtype"].array, index=samples, name="subtype")
    markers = pd.Series(adata.var["marker_of"].array, index=genes, name="marker_of")
    return expression, subtype, markers


def verhaak_gene_sets(markers: pd.Series) -> dict[str, list[str]]:
    """The Verhaak marker gene sets for masking (§3.9): one per subtype plus ``"all_840"``.

    ``markers`` is :func:`read_clanc840`'s gene → PN/NL/CL/MES (NaN = marks no subtype). Returns keys
    ``Proneural``, ``Neural``, ``Classical``, ``Mesenchymal`` (the subtype labels, so ``sets[subtype]`` works) and
    ``all_840`` (every gene of ``markers``, NaN-marked ones included); genes in file order. For the real file:
    178, 129, 162, 216 and 840 genes; the four sets are disjoint (one code a gene) and cover 685 of the 840.

    Raises:
        ReaderError: a marker code other than PN/NL/CL/MES/NaN, or a gene listed twice.
    """
    codes = markers.astype("object")
    bad = codes.notna() & ~codes.isin(MARKER_GROUPS)
    if bad.any():
        raise ReaderError(f"verhaak_gene_sets: gene {markers.index[bad][0]!r} has marker code {codes[bad].iloc[0]!r}; "
                          f"expected one of {', '.join(MARKER_GROUPS)} or NaN. Pass read_clanc840's markers.")
    if markers.index.has_duplicates:
        raise ReaderError(f"verhaak_gene_sets: gene {markers.index[markers.index.duplicated()][0]!r} appears more "
                          "than once in markers; one entry a gene.")
    sets = {MARKER_SUBTYPE[code]: [str(g) for g in markers.index[codes.eq(code).to_numpy()]] for code in MARKER_GROUPS}
    sets[ALL_GENES_SET] = [str(g) for g in markers.index]
    return sets


# --- VASARI ----------------------------------------------------------------------------------------------------

def _feature_code(column: Any) -> str:
    """``"f10.t1.flair.ratio"`` → ``"f10"`` (the text before the first '.', lower case)."""
    return str(column).split(".", 1)[0].strip().lower()


def _vasari_columns(raw: pd.DataFrame, source: str) -> dict[str, Any]:
    """VASARI feature code → the frame's column for it; every code of :data:`VASARI_ANSWER_TRAITS` exactly once."""
    found: dict[str, list[Any]] = {}
    for column in raw.columns:
        found.setdefault(_feature_code(column), []).append(column)
    missing = [code for code in VASARI_ANSWER_TRAITS if code not in found]
    if missing:
        raise ReaderError(f"{source}: no column for VASARI feature(s) {', '.join(missing)} (a column is found by "
                          f"its prefix, e.g. 'f5.proportion.enhancing'; columns: {list(raw.columns)}). Expected "
                          f"{VASARI_WHAT}.")
    twice = [code for code in VASARI_ANSWER_TRAITS if len(found[code]) > 1]
    if twice:
        raise ReaderError(f"{source}: VASARI feature {twice[0]} has several columns {found[twice[0]]}; keep one.")
    return {code: found[code][0] for code in VASARI_ANSWER_TRAITS}


def _normalise_answer(value: Any) -> str | None:
    """Lower case, whitespace collapsed; ``None`` for a missing or empty cell."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    text = " ".join(str(value).split()).lower()
    return text or None


def binarise_vasari_answers(raw: pd.DataFrame) -> pd.DataFrame:
    """0/1 imaging traits from the neuroradiologist's VASARI text answers, column by column (§3.2).

    ``raw`` is :func:`read_vasari`'s frame (patients × answer columns; a column is found by its feature prefix
    f5/f6/f7/f9/f10/f14, see :data:`VASARI_ANSWER_TRAITS`). Rules (case and spacing ignored):

    * f5 enhancing, f6 nCET, f7 necrosis, f14 edema: "Minimal", "Less than 1/3" → 0; "Between 1/3 and 2/3",
      "More than 2/3" → 1 (≥ 1/3, as :func:`gbhet_lib.mri.traits.binarise_vasari`'s threshold);
    * f9 → ``trait_focal``: "Focal" → 1; "Multifocal or Multicentric" → 0;
    * f10 → ``trait_infiltrative``: "expansive (T1~FLAIR)" → 0; "mixed (T1 less than FLAIR)" and
      "infiltrative (T1 much smaller than FLAIR)" → 1 (the bare first word is accepted too);
    * "n/a", "indeterminate" and empty/missing cells → NaN in that column only. The authors' code assigned whole
      rows while recoding and dropped a patient from every trait for one unrated feature; here each column is
      recoded on its own and a patient keeps its other traits.

    Note the authors' label encoding made *non-focal* the positive class of f9; ours is focal = 1, as in
    :mod:`gbhet_lib.mri.traits` (AUCs are unchanged by the flip).

    Returns:
        float64 DataFrame patients × ``trait_<name>`` (order of :data:`gbhet_lib.mri.traits.TRAITS`), values 0.0,
        1.0 or NaN, with ``raw``'s index.

    Raises:
        ReaderError: a feature column is missing, or holds an answer outside the rules (names the source file
            when ``raw.attrs['source']`` is set, the patient, the row, the column and the allowed answers).
    """
    source = str(raw.attrs.get("source", "binarise_vasari_answers"))
    columns = _vasari_columns(raw, source)
    by_trait: dict[str, pd.Series] = {}
    for code, column in columns.items():
        rule = VASARI_TRAIT_RULES[code]
        answers = [_normalise_answer(v) for v in raw[column]]
        values = np.full(len(answers), np.nan)
        for row, answer in enumerate(answers):
            if answer is None or answer in VASARI_UNRATED:
                continue
            if answer not in rule:
                allowed = sorted({*rule, *VASARI_UNRATED})
                raise ReaderError(f"{source}: patient {raw.index[row]} (data row {row + 1}), column {column!r} holds "
                                  f"{raw[column].iloc[row]!r}; expected one of {allowed} (case-insensitive). Fix "
                                  "the answer, or write n/a when it cannot be rated.")
            values[row] = rule[answer]
        by_trait[VASARI_ANSWER_TRAITS[code]] = pd.Series(values, index=raw.index)
    return pd.DataFrame({f"trait_{trait}": by_trait[trait] for trait in TRAITS}, index=raw.index)


def read_vasari(path: str | Path, keep_free_text: bool = False) -> pd.DataFrame:
    """The VASARI annotation table as its raw text answers (Smedley 2020 demo: 20 patients).

    Returns a DataFrame indexed by ``patient_id`` (12-character barcode, from the file's unnamed first column),
    columns as in the file: ``research.id``, ``scan.type`` and the six answer columns (``f9...``, ``f5...``,
    ``f6...``, ``f7...``, ``f14...``, ``f10...``) as strings; R's unquoted ``NA`` and empty cells are missing, the
    answer text "n/a" is kept. ``comments`` (free text) and ``study.date`` (possibly real scan dates) are dropped
    unless ``keep_free_text``. ``attrs['source']`` is the file, for :func:`binarise_vasari_answers`' messages.
    Every answer is checked against the binarisation rules here, so a bad file fails when read.

    Raises:
        ReaderError: not a CSV, a missing feature column, a patient id that is not a TCGA barcode or appears twice,
            a ``research.id`` that disagrees with its barcode, or an answer outside the rules.
    """
    p = check_file(path, VASARI_WHAT)
    table = read_text_table(p, VASARI_WHAT, dtype=str, keep_default_na=False, na_values=["NA", ""], index_col=0)
    ids = pd.Index(_patient_barcodes(table.index, p, "data row"), name="patient_id")
    if ids.has_duplicates:
        raise ReaderError(f"{p}: patient {ids[ids.duplicated()][0]} has more than one row; keep one read a patient.")
    table.index = ids
    if "research.id" in table:
        expected = [pid.removeprefix("TCGA-") for pid in ids]
        research = table["research.id"]
        wrong = [i for i, (got, want) in enumerate(zip(research, expected))
                 if pd.notna(got) and str(got).strip() != want]
        if wrong:
            row = wrong[0]
            raise ReaderError(f"{p}: data row {row + 1}: research.id {research.iloc[row]!r} does not match patient "
                              f"{ids[row]} (expected {expected[row]!r}); the rows may be shifted. Fix the file.")
    if not keep_free_text:
        table = table.drop(columns=[c for c in _FREE_TEXT if c in table.columns])
    table.attrs["source"] = str(p)
    binarise_vasari_answers(table)  # validate every answer now, naming the file
    return table


# --- clinical --------------------------------------------------------------------------------------------------

def read_clinical_patient(path: str | Path) -> pd.DataFrame:
    """Overall survival and demographics from the TCGA Biotab patient file (548 GBM patients, 3 header lines).

    The parse is :func:`~gbhet_lib.data.readers.read_tcga_clinical_patient`. OS as §3.10 of the reference notes
    allows with this file alone (the drug/radiation/follow-up files are not in the snapshot): days to death when
    vital status is Dead, else days to last follow-up (last contact) when Alive.

    Returns:
        DataFrame indexed by ``patient_id`` (12-character barcode): ``os_days`` (float, days), ``os_event``
        (Int64: 1 died, 0 censored), ``age_years`` (float, at diagnosis), ``sex`` ("female"/"male"),
        ``race_white`` (nullable boolean: WHITE → True, other races → False, not available → <NA>).
        OS is missing (``os_days`` NaN, ``os_event`` <NA>) where the vital status or its day is not available:
        2 patients in the GBM file (vital status unknown), so 546 usable. ``attrs['n_os_missing']`` counts them,
        ``attrs['os_missing']`` lists them, ``attrs['source']`` is the file.
    """
    full = read_tcga_clinical_patient(path)
    if "race" in full:
        race = full["race"].map(lambda v: v.strip().upper() if isinstance(v, str) else v)
        race_white = pd.array([pd.NA if pd.isna(r) else r == "WHITE" for r in race], dtype="boolean")
    else:
        race_white = pd.array([pd.NA] * len(full), dtype="boolean")
    out = pd.DataFrame({"os_days": full["os_days"].astype(float), "os_event": full["os_event"],
                        "age_years": full["age"].astype(float), "sex": full["sex"], "race_white": race_white},
                       index=full.index)
    missing = out["os_days"].isna() | out["os_event"].isna()
    out.attrs.update({"source": str(path), "n_os_missing": int(missing.sum()),
                      "os_missing": out.index[missing.to_numpy()].tolist()})
    return out


# --- everything, fetched ---------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class DeepRadiogenomicsData:
    """The deepRadiogenomics demo data, parsed.

    Attributes:
        expression: 173 samples (aliquot barcodes) × 840 genes, float (see :func:`read_clanc840`).
        subtype: sample → Verhaak subtype (categorical).
        markers: gene → PN/NL/CL/MES or NaN.
        gene_sets: :func:`verhaak_gene_sets` (four subtypes + ``all_840``).
        vasari_binary: 20 patients × ``trait_<name>`` 0/1/NaN (:func:`binarise_vasari_answers`).
        clinical: 548 patients × OS/age/sex/race (:func:`read_clinical_patient`).
        files: manifest entry name → the verified local file it was read from.
    """

    expression: pd.DataFrame
    subtype: pd.Series
    markers: pd.Series
    gene_sets: dict[str, list[str]]
    vasari_binary: pd.DataFrame
    clinical: pd.DataFrame
    files: Mapping[str, Path]

    @property
    def expression_patients(self) -> pd.Index:
        """Patient barcodes of the expression samples, in sample order."""
        return pd.Index([patient_barcode(s) for s in self.expression.index], name="patient_id")

    def overlap_counts(self) -> dict[str, int]:
        """Distinct patients per source and per intersection.

        Keys: ``expression``, ``vasari``, ``clinical``, ``expression_and_vasari``, ``expression_and_clinical``,
        ``vasari_and_clinical``, ``all_three``. Real files: 173, 20, 548, 7, 156, 20, 7.
        """
        expr, vas, clin = set(self.expression_patients), set(self.vasari_binary.index), set(self.clinical.index)
        return {"expression": len(expr), "vasari": len(vas), "clinical": len(clin),
                "expression_and_vasari": len(expr & vas), "expression_and_clinical": len(expr & clin),
                "vasari_and_clinical": len(vas & clin), "all_three": len(expr & vas & clin)}


def load_deepradiogenomics(mirror: Path | None = None, cache_dir: Path | None = None,
                           manifest: Manifest | None = None) -> DeepRadiogenomicsData:
    """Fetch (verified, see :func:`gbhet_lib.data.fetch.fetch`) and parse the three files of
    :data:`DEEPRADIOGENOMICS_INPUTS`.

    ``mirror``: a local data mirror (default ``$GBHET_DATA_MIRROR``; neither: download the pinned URLs into
    ``cache_dir``). ``manifest``: where the entries are looked up (default the repository's). A second or so.

    Raises:
        DataError: a file cannot be fetched or verified (the message says how to get it).
        ReaderError: a fetched file cannot be parsed.
    """
    manifest = manifest or load_manifest()
    files = {name: fetch(name, mirror=mirror, cache_dir=cache_dir, manifest=manifest)
             for name in DEEPRADIOGENOMICS_INPUTS.values()}
    expression, subtype, markers = read_clanc840(files[DEEPRADIOGENOMICS_INPUTS["expression"]])
    vasari = binarise_vasari_answers(read_vasari(files[DEEPRADIOGENOMICS_INPUTS["vasari"]]))
    clinical = read_clinical_patient(files[DEEPRADIOGENOMICS_INPUTS["clinical"]])
    return DeepRadiogenomicsData(expression=expression, subtype=subtype, markers=markers,
                                 gene_sets=verhaak_gene_sets(markers), vasari_binary=vasari, clinical=clinical,
                                 files=files)
