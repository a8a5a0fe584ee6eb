"""The synthetic GBM cohort with planted ground truth (the ``demo`` profile).

Entry point: :func:`make_demo_cohort`; read what was planted with :class:`CohortTruth`.
"""
from .cohort import CohortSpec, CohortTruth, DemoCohort, cohort_is_complete, load_demo_cohort, make_demo_cohort
from .programs import PROGRAM_NAMES, PROGRAMS, VISIBLE_PROGRAMS
from .slides import SlideGeometry, render_slide, write_pyramidal_tiff

__all__ = ["CohortSpec", "CohortTruth", "DemoCohort", "load_demo_cohort", "SlideGeometry", "PROGRAMS", "PROGRAM_NAMES", "VISIBLE_PROGRAMS",
           "cohort_is_complete", "make_demo_cohort", "render_slide", "write_pyramidal_tiff"]
