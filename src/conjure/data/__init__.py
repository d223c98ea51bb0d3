"""Datasets built from registry packages: (image, captions, source, licence) with concept-grouped splits."""

from conjure.data.build import Dataset, build_source, load_source, load_sources, split_of
from conjure.data.sources import SOURCES, MissingSource

__all__ = ["SOURCES", "Dataset", "MissingSource", "build_source", "load_source", "load_sources", "split_of"]
