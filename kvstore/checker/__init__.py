"""The consistency checker shipped with the store: a workload of concurrent clients that
records every operation (`workload`, `history`), a replay of the raw topic that gives
each key's true history (`replay`), the checks of the history against it (`analysis`)
and the verdict (`report`). `runner` ties them together for `manage.py kvstore_check`
and for the fault harness in tests/faults/.
"""
