"""gbhet_lib: the library behind the gbhet study of glioblastoma heterogeneity (WSI + RNA-seq)."""
from .config import ConfigError, StudyConfig

__version__ = "0.1.0"
__all__ = ["StudyConfig", "ConfigError", "__version__"]
