"""The demo's printed tables keep the digits of small false-positive probabilities."""

import polars as pl

from flows.demo import with_readable_fpps


def test_small_fpps_keep_their_digits():
    table = pl.DataFrame({"variable_fpp": [1.2345e-6, 2.7e-37, None, 0.5], "surprise_fpp_b1": [0.0081, 1e-3, 0.2, 1.0],
                          "discovery_score": [2.1, 1.9, 0.3, 0.0]})
    shown = with_readable_fpps(table)
    assert shown["variable_fpp"].to_list() == ["1.2e-06", "2.7e-37", None, "0.5"]
    assert shown["surprise_fpp_b1"].to_list() == ["0.0081", "0.001", "0.2", "1"]
    assert shown["discovery_score"].dtype == pl.Float64  # scores stay numbers
