"""What `clm` prints around a command: library deprecation noise stays out of it."""

from __future__ import annotations

import warnings

from clm.context import configure_output


def test_deprecations_stay_quiet_even_after_a_library_resets_the_filters() -> None:
    shown: list[type[Warning]] = []
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, category, *rest, **kw: shown.append(category)
        configure_output()
        configure_output()  # idempotent: one wrapper, not two
        # What importing Feast does, ahead of the CLI's filters:
        warnings.simplefilter("once", DeprecationWarning)
        warnings.simplefilter("always", UserWarning)
        warnings.warn("fetch_arrow_table() is deprecated", DeprecationWarning, stacklevel=1)
        warnings.warn("this API is deprecated", UserWarning, stacklevel=1)
        warnings.warn("the data has only 3 months", UserWarning, stacklevel=1)
    assert shown == [UserWarning]
