"""The synthetic GBM cohort with planted ground truth (the ``demo`` profile).

Entry point: :func:`make_demo_cohort`; read a cohort back with :func:`gbhet_lib.data.cohort.load_cohort`.
"""
from .cohort import CohortSpec, cohort_is_complete, make_demo_cohort
from .programs import PROGRAM_NAMES, PROGRAMS, VISIBLE_PROGRAMS
from .slides import (ProgramEffects, SlideGeometry, render_lineage_slides, render_slide, render_slide_files,
                     write_pyramidal_tiff)

__all__ = ["CohortSpec", "ProgramEffects", "SlideGeometry", "PROGRAMS", "PROGRAM_NAMES", "VISIBLE_PROGRAMS",
           "cohort_is_complete", "make_demo_cohort", "render_lineage_slides", "render_slide", "render_slide_files",
           "write_pyramidal_tiff"]
