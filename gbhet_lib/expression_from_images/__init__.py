"""Chapter 7: a patient's expression profile predicted from images, by slide (HE2RNA) and by MRI (Farooq et al.), on
the same patients and folds, judged by the papers' own statistics (:mod:`gbhet_lib.expression_from_images.stage`)."""
