"""Classification (docs/design.md §4): the service catalogue and the vectorized classifier."""

from collector.classify.catalogue import Catalogue, CatalogueError, Service, load_catalogue
from collector.classify.classifier import DEFAULT_INTERNAL, Classified, Classifier

__all__ = ["Catalogue", "CatalogueError", "Classified", "Classifier", "DEFAULT_INTERNAL", "Service",
           "load_catalogue"]
