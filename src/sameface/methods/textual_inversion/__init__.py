"""Modified textual inversion for faces (seed 001_908721e677f5a139; Livshits 2023)."""

from ..spec import MethodSpec
from .config import TextualInversionConfig
from .pipeline import TextualInversionPipeline
from .train import personalize

METHOD = MethodSpec(
    name="textual-inversion",
    kind="optimisation",
    paper="Livshits 2023, Personalized generation of facial images using modified textual inversion",
    config_cls=TextualInversionConfig,
    personalize=personalize,
    pipeline_cls=TextualInversionPipeline,
)

__all__ = ["METHOD", "TextualInversionConfig", "TextualInversionPipeline", "personalize"]
