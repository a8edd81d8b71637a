"""The data step: catalog, fetch, readers, cleaning, prepared datasets (see ``miniml.data.dataset``)."""
