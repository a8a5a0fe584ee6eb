"""Readers that turn the public reference data, in the formats upstream serves them, into study objects.

R files (.rda/.RData/.rds) are parsed in Python (rdata; large data frames with a fast column-selective reader),
text tables with pandas, workbooks with openpyxl (slides: :func:`gbhet_lib.wsi.slide_io.list_slides`). Every reader checks its input and raises
:class:`ReaderError` (a ValueError) naming the file, the row/column/gene and the fix.
"""
from ._common import ReaderError
from .annotation import read_iobr_annotation_rda, read_pirlygenes_reference
from .genesets import (read_gliovis_estimate_rdata, read_gliovis_gene_sets, read_gliovis_subtypes_rds, read_gmt,
                       read_iobr_hallmark_rda, read_pirlygenes_sets, read_puchalski_xlsx, write_gmt)
from .ppi import ppi_graph, read_edge_table, read_id_mapping_rda, read_innatedb_rda, read_string_rda
from .tcga import (ClinicalJoin, attach_clinical, read_cancersubtypes_gbm, read_tcga_cdr_rdata,
                   read_tcga_clinical_patient, read_verhaak_clanc840, read_wang2017_subtype_calls)

__all__ = [
    "ClinicalJoin", "ReaderError", "attach_clinical", "ppi_graph", "read_cancersubtypes_gbm",
    "read_edge_table", "read_gliovis_estimate_rdata", "read_gliovis_gene_sets", "read_gliovis_subtypes_rds",
    "read_gmt", "read_id_mapping_rda", "read_innatedb_rda", "read_iobr_annotation_rda", "read_iobr_hallmark_rda",
    "read_pirlygenes_reference", "read_pirlygenes_sets", "read_puchalski_xlsx", "read_string_rda",
    "read_tcga_cdr_rdata", "read_tcga_clinical_patient", "read_verhaak_clanc840", "read_wang2017_subtype_calls",
    "write_gmt",
]
