"""MRI: volumes (NIfTI), tumour sub-regions, VASARI-style traits, the MRI→expression model."""
