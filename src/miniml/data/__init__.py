"""The data step: catalog, fetch, readers, cleaning, prepared datasets."""

from miniml.data.dataset import Dataset, Manifest, open_dataset, write_dataset

__all__ = ["Dataset", "Manifest", "open_dataset", "write_dataset"]
