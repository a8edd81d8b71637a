import inspect

import miniml


def test_public_api_is_curated() -> None:
    exported = set(miniml.__all__)
    assert all(hasattr(miniml, name) for name in exported)
    public = {
        n for n in dir(miniml) if not n.startswith("_") and not inspect.ismodule(getattr(miniml, n))
    } - {"annotations"}
    assert public == exported - {"__version__"}
