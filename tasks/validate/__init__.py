"""Data contracts (data_contracts/*.yml) compiled into Great Expectations suites."""
