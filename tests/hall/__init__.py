"""Tests of the service hall: its functions from units, county and CLI, the calling screen, a day."""


def categories(a_extra: str = "") -> str:
    """The hall's categories: A at window 1 (`a_extra`: more keys for it), B at window 2, and C at
    window 2, open only in the first minute after midnight: closed whenever a test runs."""
    return f"""
[[categories]]
code = "A"
name = "社会保障"
item = "SB-001"
windows = [1]
{a_extra}

[[categories]]
code = "B"
name = "民政事务"
item = "MZ-002"
windows = [2]

[[categories]]
code = "C"
name = "不动产登记"
item = "BDC-003"
windows = [2]
hours = ["00:00-00:01"]
"""
